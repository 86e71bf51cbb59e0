from __future__ import annotations

import pytest
import torch

from adv_attacks import ClassificationOutput, RegressionOutput, read_output


def test_classification_output_is_log_softmax():
    z = torch.randn(3, 5)
    out = read_output(z, 3)
    assert isinstance(out, ClassificationOutput)
    torch.testing.assert_close(out.log_probs, torch.log_softmax(z, -1))
    assert out.num_classes == 5
    assert out.prediction().tolist() == z.argmax(-1).tolist()


@pytest.mark.parametrize("column", [False, True])
def test_regression_output_accepts_vector_or_column(column):
    mean, var = torch.randn(4), torch.rand(4) + 0.1
    pair = (mean[:, None], var[:, None]) if column else (mean, var)
    out = read_output(pair, 4)
    assert isinstance(out, RegressionOutput)
    assert out.mean.shape == (4,) and out.var.shape == (4,)
    assert torch.equal(out.prediction(), mean)


@pytest.mark.parametrize(
    ("output", "exc", "match"),
    [
        (torch.randn(3), ValueError, r"must return \(B, C\)"),
        (torch.randn(4, 2), ValueError, "B = 3"),
        ((torch.randn(3), torch.rand(2)), ValueError, "var must have shape"),
        ((torch.randn(3, 2), torch.rand(3)), ValueError, "mean must have shape"),
        ((torch.randn(3), 1.0), TypeError, "var must be a tensor"),
        ((torch.randn(3),) * 3, TypeError, "must be a"),
        ("logits", TypeError, "must be a"),
    ],
)
def test_bad_outputs_raise(output, exc, match):
    with pytest.raises(exc, match=match):
        read_output(output, 3)
