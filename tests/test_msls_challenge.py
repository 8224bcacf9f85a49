"""MSLS challenge predictions file, read back the way the official evaluator reads it."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest

from utils.evaluation.msls_challenge import key_from_path, write_msls_predictions

KEY_ALPHABET = np.array(list(string.ascii_letters + string.digits + "_-"))


def make_keys(count: int, seed: int) -> list[str]:
    """Distinct random 22-character keys in the alphabet of Mapillary image keys."""
    rng = np.random.default_rng(seed)
    keys: list[str] = []
    while len(keys) < count:
        key = "".join(rng.choice(KEY_ALPHABET, size=22))
        if key not in keys:
            keys.append(key)
    return keys


def test_file_loads_like_the_official_evaluator(tmp_path: Path) -> None:
    query_keys = make_keys(6, seed=0)
    db_keys = make_keys(40, seed=1)
    rng = np.random.default_rng(2)
    predictions = np.stack([rng.permutation(40)[:25] for _ in range(6)])

    path = write_msls_predictions(tmp_path / "msls_test_predictions.txt", query_keys, db_keys, predictions)

    loaded = np.loadtxt(path, dtype=str, ndmin=2)
    assert loaded.shape == (6, 26)
    assert loaded[:, 0].tolist() == query_keys
    for row, predicted in zip(loaded, predictions):
        assert row[1:].tolist() == [db_keys[i] for i in predicted]
        assert len(set(row[1:])) == 25
    assert all(len(key) == 22 for key in loaded.ravel())


def test_single_query_file_is_still_two_dimensional(tmp_path: Path) -> None:
    path = write_msls_predictions(tmp_path / "p.txt", ["q" * 22], ["a" * 22, "b" * 22], np.array([[1, 0]]))
    assert np.loadtxt(path, dtype=str, ndmin=2).tolist() == [["q" * 22, "b" * 22, "a" * 22]]


def test_key_from_path() -> None:
    assert key_from_path("test/miami/query/images/tJzigt65ZMWDop8ZQwAuoC.jpg") == "tJzigt65ZMWDop8ZQwAuoC"
    assert key_from_path(Path("test/athens/database/images/PE0XA6QgFpPgTcQFba_YiQ.jpg")) == "PE0XA6QgFpPgTcQFba_YiQ"
    assert key_from_path("3zZemSI964AoADdbpHozIg") == "3zZemSI964AoADdbpHozIg"


def test_duplicate_query_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appears more than once"):
        write_msls_predictions(tmp_path / "p.txt", ["q1", "q1"], ["a", "b"], np.array([[0, 1], [1, 0]]))
    assert not (tmp_path / "p.txt").exists()


def test_repeated_prediction_in_a_line_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="of query 'q2' repeat a database key"):
        write_msls_predictions(tmp_path / "p.txt", ["q1", "q2"], ["a", "b", "c"], np.array([[0, 1], [2, 2]]))
    # two database indices with the same key repeat the key in the line as well
    with pytest.raises(ValueError, match="repeat a database key"):
        write_msls_predictions(tmp_path / "p.txt", ["q1"], ["a", "a"], np.array([[0, 1]]))


@pytest.mark.parametrize(
    ("db_keys", "predictions", "message"),
    [
        (["a", "b"], np.array([[0, 2]]), r"must lie in \[0, 2\)"),
        (["a.jpg", "b"], np.array([[0, 1]]), "image extension"),
        (["a b", "c"], np.array([[0, 1]]), "without spaces or folders"),
        (["images/a", "c"], np.array([[0, 1]]), "without spaces or folders"),
        (["a#b", "c"], np.array([[0, 1]]), "without '#'"),
        (["a", "b"], np.array([[0.0, 1.0]]), "integer database indices"),
        (["a", "b"], np.array([[0, 1], [1, 0]]), "2 rows but there are 1 query keys"),
    ],
)
def test_bad_input(tmp_path: Path, db_keys: list[str], predictions: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_msls_predictions(tmp_path / "p.txt", ["q"], db_keys, predictions)


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="not overwriting"):
        write_msls_predictions(path, ["q"], ["a"], np.array([[0]]))
    assert path.read_text() == "keep me\n"
