"""The embedded default model on a CUDA GPU against itself on the CPU (bench/gpu_check.py runs these)."""

import pytest
import torch
from markers import requires_cuda

from zreward import load
from zreward.testing import BF16_MODEL_PROBS_ATOL, ENGINE_PROBS_ATOL, assert_close

PROMPTS = ["two red circles", "a blue star above a green square on a white background", "one small yellow triangle"]


@pytest.fixture(autouse=True)
def exact_fp32_convolutions():
    # cuDNN runs float32 convolutions (the patch embedding) in TF32 by default; the fp32 rows of the
    # tolerance table are for float32 arithmetic.
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 112, 112, generator=g)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_scores_match_the_cpu(dtype):
    cpu = load()
    gpu = load(device="cuda", dtype=dtype)
    images = _images(3, seed=int(torch.randint(0, 2**31, ())))
    expected = cpu.score(list(images), PROMPTS).probs
    actual = gpu.score(list(images), PROMPTS).probs
    # A whole-graph comparison, as the engines' parity check (fp32) or the bf16 model bound.
    atol = ENGINE_PROBS_ATOL if dtype == torch.float32 else BF16_MODEL_PROBS_ATOL
    torch.testing.assert_close(actual.cpu().float(), expected, atol=atol, rtol=0)


@requires_cuda
def test_cuda_gradients_to_pixels_match_the_cpu():
    cpu, gpu = load(), load(device="cuda")
    images = _images(2, seed=int(torch.randint(0, 2**31, ())))
    grads = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        x = images.detach().clone().to(device).requires_grad_()  # a fresh leaf on each device
        model.score_tensors(x, PROMPTS[:2]).normalized().sum().backward()
        grads.append(x.grad.cpu())
    scale = grads[0].abs().max()
    assert scale > 0
    assert_close(grads[1] / scale, grads[0] / scale, dtype=torch.float32)
