import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint

import hirl_mm  # noqa: F401  (registers the allow-list)


class NotAllowed:
    """A class no checkpoint should be able to instantiate."""

    def __reduce__(self):
        return (print, ('unpickled!', ))


def test_mmengine_objects_load_safely(tmp_path):
    buf = HistoryBuffer()
    buf.update(1.5)
    ckpt = dict(
        state_dict=dict(w=torch.ones(2)),
        meta=dict(epoch=np.int64(3), lr=np.float64(0.1), seed=1),
        message_hub=dict(log_scalars=dict(loss=buf), arr=np.arange(3)))
    torch.save(ckpt, tmp_path / 'ok.pth')
    out = torch.load(tmp_path / 'ok.pth')  # weights_only=True by default
    assert out['message_hub']['log_scalars']['loss'].current() == 1.5
    assert out['meta']['epoch'] == 3
    np.testing.assert_array_equal(out['message_hub']['arr'], np.arange(3))


def test_unexpected_pickled_object_is_refused(tmp_path, capsys):
    torch.save(
        dict(state_dict=dict(w=torch.ones(1)), x=NotAllowed()),
        tmp_path / 'bad.pth')
    with pytest.raises(pickle.UnpicklingError, match='print'):
        torch.load(tmp_path / 'bad.pth')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(1, 1), str(tmp_path / 'bad.pth'))
    assert 'unpickled!' not in capsys.readouterr().out
