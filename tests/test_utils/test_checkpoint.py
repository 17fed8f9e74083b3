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


def test_rng_state_hook_moves_device_states_to_the_cpu():
    """``--resume`` maps a checkpoint to the training device, but the random
    generators take CPU byte tensors: the hook must hand them ``.cpu()``
    (a GPU run under NCCL failed there). Here a stand-in plays the device
    tensor: only its ``.cpu()`` is a tensor."""
    from types import SimpleNamespace

    import torch

    from hirl_mm.engine.hooks import RNGStateHook

    class OnDevice:

        def __init__(self, tensor):
            self.tensor = tensor

        def cpu(self):
            return self.tensor

    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = torch.rand(3)
    checkpoint['rng_state']['torch'] = OnDevice(
        checkpoint['rng_state']['torch'])
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    hook.before_train(None)
    assert torch.equal(torch.rand(3), expected)
