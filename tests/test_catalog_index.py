"""worker.catalog_index: an index extended by appended products, against a plain dict per step."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.catalog_index import AppendedIndex, as_dict, extended

IDS = st.text(alphabet="ABCDEFGHIJ", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(first=st.lists(IDS, unique=True, max_size=60), data=st.data())
def test_an_index_extended_step_by_step_answers_as_a_dict_rebuilt_at_each_step(first: list[str],
                                                                             data: st.DataObject) -> None:
    ids = list(first)
    index = {product_id: position for position, product_id in enumerate(ids)}
    earlier: list[tuple[object, dict[str, int]]] = []
    for _ in range(data.draw(st.integers(1, 12))):
        appended = data.draw(st.lists(IDS.filter(lambda i: i not in ids), unique=True, max_size=6))
        new = extended(index, appended, len(ids))
        earlier.append((index, {product_id: position for position, product_id in enumerate(ids)}))
        ids += appended
        model = {product_id: position for position, product_id in enumerate(ids)}  # the reference
        assert dict(new) == model and new == model and len(new) == len(model) and list(new) == ids
        assert all(new[p] == model[p] and p in new and new.get(p) == model[p] for p in ids)
        assert "absent-id" not in new and new.get("absent-id") is None
        assert as_dict(new) == model and type(as_dict(new)) is dict
        index = new
    # Extending never changed an index extended before (images keep theirs: a write may start over).
    for old, model in earlier:
        assert dict(old) == model


def test_a_few_products_appended_to_a_large_index_are_laid_over_it_and_many_are_joined_into_a_dict() -> None:
    base = {f"P{n}": n for n in range(800)}
    few = extended(base, ["N1", "N2"], 800)
    assert isinstance(few, AppendedIndex) and few._base is base  # not copied
    many = extended(few, [f"M{n}" for n in range(120)], 802)
    assert type(many) is dict and len(many) == 922 and many["M119"] == 921 and many["N2"] == 801
