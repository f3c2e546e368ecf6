"""The hand-written autograd functions and the CPU dropout against plain autograd."""
import pytest
import torch

from bc import BCNet, _GlimpseLogits
from fc import RNG_CHUNK, Dropout, cpu_uniform, weight_norm_scale


def plain_glimpse_logits(v_, q_, weight):
    """The bilinear form written out: [B,N,K], [B,L,K], [H,K] -> [B,H,N,L]."""
    return torch.einsum('bik,hk,bjk->bhij', v_, weight, q_)


def glimpse_inputs(dtype, batch=3, num_boxes=5, num_words=4, glimpses=2, hidden=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, num_boxes, hidden), (batch, num_words, hidden), (glimpses, hidden)]
    return [torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]


def test_glimpse_logits_match_the_written_out_form():
    inputs = glimpse_inputs(torch.float64)
    assert torch.allclose(_GlimpseLogits.apply(*inputs), plain_glimpse_logits(*inputs))


def test_glimpse_logits_gradients_pass_gradcheck():
    assert torch.autograd.gradcheck(_GlimpseLogits.apply, glimpse_inputs(torch.float64))


def test_glimpse_logits_backward_accepts_any_output_gradient_layout():
    inputs = glimpse_inputs(torch.float64)
    out = _GlimpseLogits.apply(*inputs)
    grad_out = torch.randn(out.shape[::-1], dtype=torch.float64).permute(3, 2, 1, 0)  # strided
    ours = torch.autograd.grad(out, inputs, grad_out)
    reference = torch.autograd.grad(plain_glimpse_logits(*inputs), inputs, grad_out)
    for got, want in zip(ours, reference):
        assert torch.allclose(got, want)


def test_glimpse_logits_under_bf16_autocast_follow_float32():
    inputs = glimpse_inputs(torch.float32, batch=4, num_boxes=10, num_words=7, glimpses=3, hidden=64)
    grad_out = torch.randn(4, 3, 10, 7)
    reference = torch.autograd.grad(plain_glimpse_logits(*inputs), inputs, grad_out)
    v_, q_, weight = inputs
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = _GlimpseLogits.apply(v_.bfloat16(), q_.bfloat16(), weight)
    assert out.dtype == torch.bfloat16
    grads = torch.autograd.grad(out, inputs, grad_out.bfloat16())
    for got, want, source in zip(grads, reference, inputs):
        assert got.dtype == source.dtype
        relative = (got.float() - want).norm() / want.norm()
        assert relative < 0.02, relative


def test_bcnet_attention_logits_gradients_match_autograd():
    torch.manual_seed(0)
    net = BCNet(12, 10, 8, 3, dropout=(0.0, 0.0), k=3).double().eval()
    v = torch.rand(2, 5, 12, dtype=torch.float64, requires_grad=True)
    q = torch.rand(2, 4, 10, dtype=torch.float64, requires_grad=True)
    logits = net(v, q)
    v_, q_ = net.v_net(v), net.q_net(q)
    weight, bias = net._glimpse_weights()
    expected = plain_glimpse_logits(v_, q_, weight) + bias.view(1, -1, 1, 1)
    assert torch.allclose(logits, expected)
    params = [v, q] + list(net.parameters())
    ours = torch.autograd.grad(logits.square().sum(), params)
    reference = torch.autograd.grad(expected.square().sum(), params)
    for got, want in zip(ours, reference):
        assert torch.allclose(got, want)


def test_scalar_weight_norm_gradients_pass_gradcheck():
    v = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    g = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(weight_norm_scale, (v, g))
    assert torch.allclose(weight_norm_scale(v, g).norm(), g)


@pytest.mark.parametrize('p', [0.2, 0.5])
def test_cpu_dropout_keeps_1_minus_p_and_rescales(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert torch.all(y[kept] == 1 / (1 - p))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    assert torch.equal(Dropout(p).eval()(x), x)


@pytest.mark.parametrize('size', [3000, 3 * RNG_CHUNK])
def test_cpu_dropout_is_reproducible_from_the_seed(size):
    x = torch.randn(size)
    torch.manual_seed(3)
    first = Dropout(0.2).train()(x)
    torch.manual_seed(3)
    second = Dropout(0.2).train()(x)
    torch.manual_seed(4)
    third = Dropout(0.2).train()(x)
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_parallel_uniform_draws_do_not_depend_on_the_thread_count():
    shape = (3, RNG_CHUNK + 1000)  # several separately seeded blocks
    threads = torch.get_num_threads()
    draws = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            torch.manual_seed(11)
            draws.append(cpu_uniform(shape))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(draws[0], other) for other in draws[1:])
    flat = draws[0].view(-1)
    assert 0 <= flat.min() and flat.max() < 1
    assert abs(flat.mean().item() - 0.5) < 0.002
    # blocks come from different generators: no block repeats the first
    first = flat[:1000]
    for start in range(RNG_CHUNK, flat.numel() - 1000, RNG_CHUNK):
        assert not torch.equal(first, flat[start:start + 1000])
    torch.manual_seed(12)
    assert not torch.equal(cpu_uniform(shape), draws[0])


def test_question_states_are_contiguous_for_the_linear_layers():
    from language_model import QuestionEmbedding
    encoder = QuestionEmbedding(6, 8, 1, False, 0.0)
    states = encoder.forward_all(torch.randn(3, 5, 6))
    assert states.shape == (3, 5, 8) and states.is_contiguous()
    expected, _ = encoder.rnn(torch.randn(3, 5, 6).zero_())
    assert torch.allclose(encoder.forward_all(torch.zeros(3, 5, 6)), expected)
