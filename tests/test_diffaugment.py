"""DiffAugment (Zhao et al., NeurIPS 2020): shapes, gradients, shared parameters, the paper's definitions on
hand-built inputs, reproducibility, policy parsing and the ranges of the random draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from synthmed.errors import SynthmedError


def _load_diffaugment():
    """The module on its own: ``synthmed.augment``'s ``__init__`` imports every augmenter, so a problem elsewhere
    in the package must not hide this module's results (it imports only torch and synthmed.errors)."""
    try:
        from synthmed.augment import diffaugment
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "src" / "synthmed" / "augment" / "diffaugment.py"
        spec = importlib.util.spec_from_file_location("_synthmed_diffaugment_under_test", path)
        diffaugment = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(diffaugment)
    return diffaugment


_module = _load_diffaugment()
POLICIES, DiffAugment, parse_policy = _module.POLICIES, _module.DiffAugment, _module.parse_policy

FULL = "color,translation,cutout"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 4, c: int = 3, h: int = 12, w: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_gen(seed)) * 2 - 1


def _color_params(n: int, brightness=0.0, saturation=1.0, contrast=1.0, grey: bool = False) -> dict:
    params = {"brightness": torch.full((n,), brightness), "contrast": torch.full((n,), contrast)}
    if not grey:
        params["saturation"] = torch.full((n,), saturation)
    return params


def _ints(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def _reference_translation(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Pixel by pixel: the content of image k moves dy[k] rows down and dx[k] columns right, zeros come in."""
    out = torch.zeros_like(x)
    _, _, h, w = x.shape
    for k in range(x.shape[0]):
        for i in range(h):
            for j in range(w):
                si, sj = i - int(dy[k]), j - int(dx[k])
                if 0 <= si < h and 0 <= sj < w:
                    out[k, :, i, j] = x[k, :, si, sj]
    return out


def _reference_cutout(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = x.clone()
    for k in range(x.shape[0]):
        top, left = int(cy[k]) - size[0] // 2, int(cx[k]) - size[1] // 2
        out[k, :, max(top, 0) : max(top + size[0], 0), max(left, 0) : max(left + size[1], 0)] = 0
    return out


# -- shapes, identity, change, gradients ---------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_are_kept(channels, dtype):
    x = _batch(c=channels, h=10, w=14).to(dtype)
    out = DiffAugment(FULL)(x, _gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_empty_policy_is_the_identity_and_draws_nothing():
    x = _batch()
    for policy in ("", "none", " None ", (), ["none"]):
        aug = DiffAugment(policy)
        g = _gen(5)
        state = g.get_state()
        assert aug.policy == ()
        assert aug.sample(x, g) == {}
        assert aug(x, g) is x
        assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_policy_changes_images(policy, channels):
    x = _batch(n=8, c=channels, h=16, w=16)
    out = DiffAugment(policy)(x, _gen(3))
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every image changed, not just one


@pytest.mark.parametrize("policy", [*POLICIES, FULL])
@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_flow_to_the_input(policy, channels):
    x = _batch(n=6, c=channels, h=16, w=16).requires_grad_()
    (DiffAugment(policy)(x, _gen(4)) * torch.linspace(-1, 2, 16)).sum().backward()  # weights: not a constant sum
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()  # every image of the batch receives gradient


def test_gradient_is_zero_exactly_where_cutout_removed_pixels():
    x = _batch(n=3, c=1, h=8, w=8).requires_grad_()
    aug = DiffAugment("cutout")
    params = aug.sample(x, _gen(2))
    aug.apply(x, params).sum().backward()
    removed = aug.apply(torch.ones_like(x), params) == 0
    assert torch.equal(x.grad == 0, removed) and removed.any()


# -- shared parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_same_params_give_the_same_transform_on_two_batches(channels):
    aug = DiffAugment(FULL)
    real = _batch(n=5, c=channels, h=16, w=16, seed=1)
    fake = _batch(n=5, c=channels, h=16, w=16, seed=2)
    params = aug.sample(real, _gen(7))
    assert torch.equal(aug.apply(real, params), aug.apply(real.clone(), params))
    assert torch.equal(aug(real, None, params=params), aug.apply(real, params))
    # color commutes with adding a constant; the geometric part then zeroes the same pixels in both batches
    geometric = DiffAugment("translation,cutout")
    geo_params = {k: v for k, v in params.items() if k.startswith(("translation", "cutout"))}
    kept = geometric.apply(torch.ones_like(real), geo_params)
    shifted = aug.apply(real + 0.25, params) - aug.apply(real, params)
    assert torch.allclose(shifted, 0.25 * kept, atol=1e-5)
    # the zero patterns of translation and cutout depend on the params only, not on the images
    ones_a = aug.apply(torch.ones_like(real), params)
    assert torch.equal(geometric.apply(fake.abs() + 1, geo_params) == 0, kept == 0)
    assert torch.equal(geometric.apply(real.abs() + 1, geo_params) == 0, kept == 0)
    assert torch.equal(ones_a == 0, kept == 0)
    # and a fresh draw does differ
    other = aug.sample(real, _gen(8))
    assert not torch.equal(aug.apply(real, other), aug.apply(real, params))


# -- the paper's definitions on hand-built inputs ----------------------------------------------------------


def test_brightness_adds_the_offset():
    x = _batch(n=2, c=3, h=5, w=5)
    params = _color_params(2, saturation=1.0, contrast=1.0)
    params["brightness"] = torch.tensor([0.3, -0.45])
    out = DiffAugment("color").apply(x, params)
    assert torch.allclose(out, x + torch.tensor([0.3, -0.45]).view(2, 1, 1, 1), atol=1e-6)


def test_saturation_scales_the_deviation_from_the_channel_mean():
    x = _batch(n=2, c=3, h=4, w=6)
    mean = x.mean(dim=1, keepdim=True)
    aug = DiffAugment("color")
    params = _color_params(2)
    params["saturation"] = torch.tensor([0.5, 1.75])
    expected = mean + torch.tensor([0.5, 1.75]).view(2, 1, 1, 1) * (x - mean)
    assert torch.allclose(aug.apply(x, params), expected, atol=1e-6)
    # factor 0 turns a colour image grey: every channel is the channel mean
    grey = aug.apply(x, _color_params(2, saturation=0.0))
    assert torch.allclose(grey, mean.expand_as(x), atol=1e-6)


def test_contrast_scales_the_deviation_from_the_image_mean():
    x = _batch(n=2, c=3, h=4, w=4)
    x[1] += 0.5  # different image means: the mean is per image over C, H, W
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    params = _color_params(2)
    params["contrast"] = torch.tensor([0.5, 1.5])
    expected = mean + torch.tensor([0.5, 1.5]).view(2, 1, 1, 1) * (x - mean)
    out = DiffAugment("color").apply(x, params)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), mean.flatten(), atol=1e-6)
    # grey images: the same contrast, no saturation parameter needed
    g = _batch(n=1, c=1, h=4, w=4)
    gm = g.mean()
    out = DiffAugment("color").apply(g, _color_params(1, contrast=0.5, grey=True))
    assert torch.allclose(out, gm + 0.5 * (g - gm), atol=1e-6)


def test_color_applies_brightness_then_saturation_then_contrast():
    x = _batch(n=1, c=3, h=3, w=3)
    b, s, c = 0.2, 1.6, 0.7
    step = x + b
    step = step.mean(1, keepdim=True) + s * (step - step.mean(1, keepdim=True))
    step = step.mean() + c * (step - step.mean())
    out = DiffAugment("color").apply(x, _color_params(1, brightness=b, saturation=s, contrast=c))
    assert torch.allclose(out, step, atol=1e-6)


def test_translation_moves_a_pixel_exactly_and_fills_with_zeros():
    aug = DiffAugment("translation")
    x = torch.full((1, 1, 8, 9), -1.0)
    x[0, 0, 4, 3] = 1.0
    params = {"translation_y": _ints(-2), "translation_x": _ints(1)}  # 2 rows up, 1 column right
    out = aug.apply(x, params)
    bright = (out == 1).nonzero().tolist()
    assert bright == [[0, 0, 2, 4]]
    # the two bottom rows and the first column came from outside: 0, not the image's -1 background
    assert (out[0, 0, 6:, :] == 0).all() and (out[0, 0, :, 0] == 0).all()
    inner = out[0, 0, :6, 1:]
    assert ((inner == -1) | (inner == 1)).all()
    # colour images: every channel moves alike
    rgb = torch.arange(2 * 3 * 8 * 9, dtype=torch.float32).view(2, 3, 8, 9) + 1
    params = {"translation_y": _ints(3, -1), "translation_x": _ints(-2, 4)}
    assert torch.equal(
        aug.apply(rgb, params), _reference_translation(rgb, params["translation_y"], params["translation_x"])
    )


def test_translation_by_the_full_size_empties_the_image_and_zero_is_the_identity():
    aug = DiffAugment("translation", translation_ratio=1.0)
    x = _batch(n=3, c=1, h=6, w=5)
    out = aug.apply(x, {"translation_y": _ints(6, 0, 0), "translation_x": _ints(0, -5, 0)})
    assert (out[:2] == 0).all() and torch.equal(out[2], x[2])


def test_translation_matches_a_pixel_loop_on_random_params():
    aug = DiffAugment("translation", translation_ratio=0.5)
    x = _batch(n=6, c=3, h=10, w=7)  # not square: rows and columns must not be swapped
    params = aug.sample(x, _gen(11))
    assert params["translation_y"].abs().max() > 0 and params["translation_x"].abs().max() > 0
    expected = _reference_translation(x, params["translation_y"], params["translation_x"])
    assert torch.equal(aug.apply(x, params), expected)


@pytest.mark.parametrize(
    ("size", "centre", "rows", "cols"),
    [
        ((8, 8), (3, 4), (1, 5), (2, 6)),  # inside: 4 x 4 from (3 - 2, 4 - 2)
        ((8, 8), (0, 7), (0, 2), (5, 8)),  # clipped at the top and on the right
        ((8, 8), (8, 8), (6, 8), (6, 8)),  # an even patch's centre may sit one past the last pixel
        ((6, 6), (0, 5), (0, 2), (4, 6)),  # odd patch (3 x 3): rows -1..1, columns 4..6, clipped
    ],
)
def test_cutout_zeroes_exactly_the_expected_rectangle(size, centre, rows, cols):
    h, w = size
    aug = DiffAugment("cutout", cutout_ratio=0.5)
    x = torch.rand(1, 3, h, w) + 1  # no zero anywhere before the cutout
    out = aug.apply(x, {"cutout_y": _ints(centre[0]), "cutout_x": _ints(centre[1])})
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    assert torch.equal(out[0] == 0, expected.expand(3, h, w))
    assert torch.equal(out[0][:, ~expected], x[0][:, ~expected])


def test_cutout_size_and_a_non_square_patch_match_a_loop():
    aug = DiffAugment("cutout", cutout_ratio=0.5)
    assert aug.cutout_size(28, 28) == (14, 14)
    assert aug.cutout_size(7, 5) == (4, 3)  # round half up, as the official int(v + 0.5)
    x = _batch(n=8, c=1, h=7, w=5) + 2
    params = aug.sample(x, _gen(12))
    expected = _reference_cutout(x, params["cutout_y"], params["cutout_x"], (4, 3))
    assert torch.equal(aug.apply(x, params), expected)


def test_grey_images_draw_no_saturation():
    aug = DiffAugment("color")
    grey, colour = _batch(n=5, c=1), _batch(n=5, c=3)
    assert set(aug.sample(grey, _gen())) == {"brightness", "contrast"}
    assert set(aug.sample(colour, _gen())) == {"brightness", "saturation", "contrast"}
    # exactly two numbers per image drawn for grey, three for colour
    g, ref = _gen(9), _gen(9)
    aug.sample(grey, g)
    torch.rand(10, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())
    # params of a colour batch do not silently fit a grey one (and vice versa)
    with pytest.raises(SynthmedError, match="saturation"):
        aug.apply(grey, aug.sample(colour, _gen()))
    with pytest.raises(SynthmedError, match="saturation"):
        aug.apply(colour, aug.sample(grey, _gen()))


# -- reproducibility -----------------------------------------------------------------------------------------


def test_same_seed_same_output_and_the_global_seed_changes_nothing():
    aug = DiffAugment(FULL)
    x = _batch(n=6, c=3, h=16, w=16)
    torch.manual_seed(1)
    first = aug(x, _gen(42))
    torch.manual_seed(2)
    global_state = torch.get_rng_state()
    second = aug(x, _gen(42))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator was not used
    assert not torch.equal(aug(x, _gen(43)), first)


def test_params_are_drawn_in_float32_whatever_the_dtype():
    aug = DiffAugment(FULL)
    x = _batch(n=4, c=3, h=8, w=8)
    p32, p64 = aug.sample(x, _gen(3)), aug.sample(x.double(), _gen(3))
    assert all(torch.equal(p32[k], p64[k]) for k in p32)


def test_a_non_cpu_or_missing_generator_is_refused():
    aug = DiffAugment("color")
    with pytest.raises(SynthmedError, match="Generator"):
        aug(_batch(), None)
    with pytest.raises(SynthmedError, match="Generator"):
        aug.sample(_batch(), 0)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_get_the_cpu_draws_and_the_same_result():
    aug = DiffAugment(FULL)
    x = _batch(n=4, c=3, h=16, w=16)
    params = aug.sample(x.cuda(), _gen(5))
    assert all(v.device.type == "cuda" for v in params.values())
    assert torch.allclose(aug(x.cuda(), _gen(5)).cpu(), aug(x, _gen(5)), atol=1e-6)


# -- parse_policy and validation -----------------------------------------------------------------------------


def test_parse_policy_gives_the_canonical_order():
    assert parse_policy("cutout, color ,translation") == ("color", "translation", "cutout")
    assert parse_policy("translation,color") == ("color", "translation")
    assert parse_policy(["cutout", "Color"]) == ("color", "cutout")
    assert parse_policy("none") == () and parse_policy("") == () and parse_policy("  ") == () and parse_policy([]) == ()
    assert DiffAugment("cutout,color").policy == ("color", "cutout")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("color,flip", r"unknown policy 'flip'.*color, translation, cutout"),
        ("colour", "unknown policy 'colour'"),
        ("color,color", "twice"),
        ("color, Color", "twice"),
        ("color,,cutout", "empty name"),
        ("none,color", "unknown policy 'none'"),
        (["translation", "shift"], "unknown policy 'shift'"),
        (None, "comma-separated"),
        (["color", 3], "comma-separated"),
    ],
)
def test_parse_policy_refuses_bad_names_in_one_line(text, match):
    with pytest.raises(SynthmedError, match=match) as caught:
        parse_policy(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), True, "0.5"])
def test_ratios_must_lie_in_zero_one(ratio):
    with pytest.raises(SynthmedError, match="translation_ratio"):
        DiffAugment("translation", translation_ratio=ratio)
    with pytest.raises(SynthmedError, match="cutout_ratio"):
        DiffAugment("cutout", cutout_ratio=ratio)
    DiffAugment(FULL, translation_ratio=1, cutout_ratio=1.0)


def test_bad_batches_and_params_are_refused():
    aug = DiffAugment(FULL)
    with pytest.raises(SynthmedError, match=r"\(N, C, H, W\)"):
        aug(torch.zeros(3, 8, 8), _gen())
    with pytest.raises(SynthmedError, match=r"\(N, C, H, W\)"):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.int64), _gen())
    x = _batch(n=4, c=3, h=8, w=8)
    params = aug.sample(x, _gen())
    with pytest.raises(SynthmedError, match="shape"):
        aug.apply(x[:2], params)  # parameters of 4 images on 2
    with pytest.raises(SynthmedError, match="keys"):
        DiffAugment("color").apply(x, params)
    with pytest.raises(SynthmedError, match="integer"):
        aug.apply(x, {**params, "translation_x": params["translation_x"].float()})


def test_repr_shows_the_policy():
    assert (
        repr(DiffAugment("cutout,color"))
        == "DiffAugment(policy='color,cutout', translation_ratio=0.125, cutout_ratio=0.5)"
    )
    assert "policy='none'" in repr(DiffAugment(""))


# -- ranges of the random draws ----------------------------------------------------------------------------


def test_drawn_parameters_stay_in_the_paper_ranges():
    aug = DiffAugment(FULL)
    x = torch.zeros(4000, 3, 28, 28)
    p = aug.sample(x, _gen(0))
    assert aug.max_shift(28, 28) == (4, 4)  # round(0.125 * 28) = round(3.5) = 4
    for key, low, high in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        assert p[key].min() >= low and p[key].max() < high, key
        assert p[key].min() < low + 0.01 and p[key].max() > high - 0.01, key  # the whole range is used
    for key in ("translation_y", "translation_x"):
        assert p[key].unique().tolist() == list(range(-4, 5)), key  # every shift in -4..4, nothing beyond
    for key in ("cutout_y", "cutout_x"):
        assert p[key].unique().tolist() == list(range(29)), key  # even 14 px patch: centre 0..28
    odd = DiffAugment("cutout").sample(torch.zeros(2000, 1, 6, 6), _gen(1))  # 3 px patch: centre 0..5
    assert odd["cutout_y"].unique().tolist() == list(range(6)) and odd["cutout_x"].unique().tolist() == list(range(6))
    assert DiffAugment("translation").max_shift(20, 12) == (3, 2)  # 2.5 rounds up as in the official code
