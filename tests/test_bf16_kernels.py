"""bf16 on a CPU without oneDNN bf16 (AVX2): convolutions and matrix products run by the fp32 kernels on the bf16
operands, which is what oneDNN's bf16 kernels compute (exact products, fp32 sums) at fp32's speed."""

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _get_current_dispatch_mode

from synthmed.train import device as dev


def _rounded(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.bfloat16).float()


def test_a_convolution_and_its_gradients_are_those_of_fp32_kernels_on_bf16_operands():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, requires_grad=True)
    with dev.Bf16OnFp32Kernels(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = F.conv2d(x, w, padding=1)
    assert out.dtype == torch.bfloat16
    expected = F.conv2d(_rounded(x), _rounded(w), padding=1).to(torch.bfloat16)
    assert torch.equal(out, expected)  # summed in the same order as the fp32 kernel here: equal bit for bit
    upstream = torch.randn_like(out, dtype=torch.float32).to(torch.bfloat16)
    with dev.Bf16OnFp32Kernels():
        out.backward(upstream)
    x2, w2 = _rounded(x).detach().requires_grad_(), _rounded(w).detach().requires_grad_()
    F.conv2d(x2, w2, padding=1).backward(upstream.float())
    assert w.grad is not None and x.grad is not None
    assert torch.allclose(w.grad, _rounded(w2.grad), rtol=1e-2, atol=1e-2)
    assert torch.allclose(x.grad, _rounded(x2.grad), rtol=1e-2, atol=1e-2)


def test_matrix_products_are_rounded_fp32_products_and_fp32_work_is_untouched():
    torch.manual_seed(1)
    a, b, bias = torch.randn(5, 7), torch.randn(7, 3), torch.randn(3)
    with dev.Bf16OnFp32Kernels():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            linear = F.linear(a, b.T, bias)
        plain = a @ b  # no bf16 operand: the op runs as it is
    assert linear.dtype == torch.bfloat16
    assert torch.equal(linear, torch.addmm(_rounded(bias), _rounded(a), _rounded(b)).to(torch.bfloat16))
    assert plain.dtype == torch.float32 and torch.equal(plain, a @ b)


def test_the_context_says_which_kernels_ran(monkeypatch):
    with dev.bf16_kernels("cuda") as kernels:  # a GPU runs bf16 natively: nothing to do (no GPU needed to ask)
        assert kernels is None and _get_current_dispatch_mode() is None
    monkeypatch.setattr(dev, "cpu_has_bf16_kernels", lambda: True)
    with dev.bf16_kernels("cpu") as kernels:
        assert kernels == "onednn" and _get_current_dispatch_mode() is None
    monkeypatch.setattr(dev, "cpu_has_bf16_kernels", lambda: False)
    with dev.bf16_kernels(torch.device("cpu")) as kernels:
        assert kernels == "fp32" and isinstance(_get_current_dispatch_mode(), dev.Bf16OnFp32Kernels)
    assert _get_current_dispatch_mode() is None


def test_a_resnet_training_step_on_fp32_kernels(monkeypatch):
    """A classifier's step as the trainer takes it (forward under autocast, backward outside it) inside a run's
    context on a CPU without oneDNN bf16: every gradient is there, fp32 (the master weights) and finite."""
    from synthmed.nets.classifiers import build_classifier

    monkeypatch.setattr(dev, "cpu_has_bf16_kernels", lambda: False)
    torch.manual_seed(0)
    model = build_classifier("resnet18", in_channels=1, n_outputs=2)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])
    with dev.bf16_kernels("cpu"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
