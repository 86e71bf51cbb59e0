from __future__ import annotations

import numpy as np
import pytest

from advbayes_data.uci_files import (
    CAL_HOUSING_COLUMNS,
    read_cal_housing,
    read_delimited,
    read_enb2012,
    read_enb2012_xlsx,
)


def test_semicolon_csv_with_quoted_header(tmp_path, write_wine, make_wine_rows):
    rows = make_wine_rows(5)
    names, values = read_delimited(write_wine(tmp_path / "w.csv", rows), 12)
    assert names[0] == "fixed acidity" and names[-1] == "quality" and '"' not in "".join(names)
    np.testing.assert_array_equal(values, rows)
    assert values.dtype == np.float64


def test_wine_line_by_hand(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text('"a";"b"\n7.4;0.7\n\n11;5\n')
    names, values = read_delimited(path, 2)
    assert names == ("a", "b")
    np.testing.assert_array_equal(values, [[7.4, 0.7], [11.0, 5.0]])


def test_cal_housing_without_and_with_header(tmp_path, write_cal_housing):
    rows = np.array([[-122.23, 37.88, 41, 880, 129, 322, 126, 8.3252, 452600]] * 3)
    path = write_cal_housing(tmp_path / "cal_housing.data", rows)
    assert path.read_text().startswith("-122.230000,37.880000,41.000000,")
    np.testing.assert_allclose(read_cal_housing(path), rows)
    with_header = tmp_path / "with_header.data"
    with_header.write_text(",".join(CAL_HOUSING_COLUMNS) + "\n" + path.read_text())
    np.testing.assert_allclose(read_cal_housing(with_header), rows)


def test_enb2012_xlsx_and_csv_agree(tmp_path, write_enb_xlsx):
    rng = np.random.default_rng(0)
    rows = np.round(rng.uniform(0, 50, (7, 10)), 2)
    names, values = read_enb2012_xlsx(write_enb_xlsx(tmp_path / "ENB2012_data.xlsx", rows))
    assert names == ("X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "Y1", "Y2")
    np.testing.assert_array_equal(values, rows)
    csv = tmp_path / "ENB2012_data.csv"
    csv.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows))
    csv_names, csv_values = read_enb2012(csv)
    assert csv_names == names
    np.testing.assert_array_equal(csv_values, values)
    np.testing.assert_array_equal(read_enb2012(tmp_path / "ENB2012_data.xlsx")[1], values)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param('"a";"b"\n1;2;3\n', "line 2 has 3 fields", id="field-count"),
        pytest.param('"a";"b"\n1;x\n', "not a number", id="non-number"),
        pytest.param('"a";"b"\n1;nan\n', "NaN", id="nan"),
        pytest.param('"a";"b"\n', "no data rows", id="header-only"),
        pytest.param("", "empty", id="empty"),
        pytest.param('"a";"b";"c"\n1;2;3\n', "header has 3", id="header-width"),
    ],
)
def test_malformed_delimited_files(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_delimited(path, 2)
    assert str(path) in str(info.value)


def test_malformed_workbooks(tmp_path):
    import openpyxl

    not_xlsx = tmp_path / "not.xlsx"
    not_xlsx.write_text("hello")
    with pytest.raises(ValueError, match="xlsx"):
        read_enb2012_xlsx(not_xlsx)
    workbook = openpyxl.Workbook()
    workbook.active.append(["X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "Y1", "Y2"])
    workbook.active.append([1, 2, 3, 4, 5, 6, 7, 8, 9, None])
    partial = tmp_path / "partial.xlsx"
    workbook.save(partial)
    with pytest.raises(ValueError, match="row 2 has empty cells"):
        read_enb2012_xlsx(partial)
    workbook = openpyxl.Workbook()
    workbook.active.append(["X1", "Y1"])
    workbook.active.append([1, 2])
    narrow = tmp_path / "narrow.xlsx"
    workbook.save(narrow)
    with pytest.raises(ValueError, match="expected 10"):
        read_enb2012_xlsx(narrow)
