"""batch_statistics: BN layers normalise by the batch, running statistics
and modes untouched."""
import torch
import torch.nn as nn

from hirl_mm.models.utils import batch_statistics


def test_batch_statistics_leave_running_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    bn = net[1]
    saved = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(5, 3)
    with torch.no_grad(), batch_statistics(net, len(x)):
        out = net(x)
    h = net[0](x).detach()
    expected = (h - h.mean(0)) / (h.var(0, unbiased=False) + bn.eps).sqrt()
    torch.testing.assert_close(out, expected * bn.weight + bn.bias)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert not bn.training and bn.track_running_stats
    # one image has no statistics of its own: the running ones stay
    with torch.no_grad(), batch_statistics(net, 1):
        assert torch.equal(net(x[:1]), net.eval()(x[:1]))
