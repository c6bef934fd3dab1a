import pytest

from optibridge.optimove.batching import chunked


def test_splits_sequences_into_full_chunks_and_a_remainder() -> None:
    assert [len(c) for c in chunked(list(range(250)), 100)] == [100, 100, 50]


def test_splits_lazy_iterables_without_materialising_them_first() -> None:
    chunks = list(chunked((i for i in range(7)), 3))
    assert chunks == [[0, 1, 2], [3, 4, 5], [6]]


def test_exact_multiple_yields_no_empty_tail_and_empty_input_yields_nothing() -> None:
    assert [len(c) for c in chunked(list(range(200)), 100)] == [100, 100]
    assert list(chunked([], 100)) == []


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked([1], 0))
