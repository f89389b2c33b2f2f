"""worker.catalog_image: incremental serialization is byte for byte the full dump, for any catalog and change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog_core.errors import CatalogCorruptError
from worker.catalog_file import serialize_catalog
from worker import catalog_image_parts
from worker.catalog_image import CatalogImage
from tests.helpers import catalog_digest

# JSON values as a catalog may hold them: any text (non-ASCII, control characters, newlines,
# quotes), numbers, nesting, empty containers.
SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=8)
IDS = st.text(min_size=1, max_size=10)


def products_with(ids: list[str], fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"product_id": product_id, **body} for product_id, body in zip(ids, fields, strict=False)]


@st.composite
def catalogs(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(IDS, unique=True, max_size=8))
    bodies = draw(st.lists(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "product_id"), VALUES, max_size=4),
                           min_size=len(ids), max_size=len(ids)))
    return products_with(ids, bodies)


@settings(max_examples=120, deadline=None)
@given(catalog=catalogs(), data=st.data())
def test_a_changed_image_serializes_exactly_as_the_full_dump_of_the_changed_catalog(
    catalog: list[dict[str, Any]], data: st.DataObject
) -> None:
    image = CatalogImage.from_products(catalog)
    assert image.to_bytes() == serialize_catalog(catalog)
    # A change: some products replaced, some created, and the order maybe shuffled.
    ids = [p["product_id"] for p in catalog]
    replaced = data.draw(st.lists(st.sampled_from(ids), unique=True) if ids else st.just([]))
    new_ids = data.draw(st.lists(IDS.filter(lambda i: i not in ids), unique=True, max_size=3))
    changed = {pid: {"product_id": pid, **data.draw(st.dictionaries(st.text(max_size=5), VALUES, max_size=3))}
               for pid in [*replaced, *new_ids]}
    for product in changed.values():
        product["product_id"] = product.pop("product_id")  # keep product_id, but not always first
    order = None
    if new_ids or data.draw(st.booleans()):
        order = data.draw(st.permutations([*ids, *new_ids]))
    expected_order = order if order is not None else ids
    by_id = {p["product_id"]: p for p in catalog} | changed
    expected = serialize_catalog([by_id[pid] for pid in expected_order])
    assert image.with_changes(changed, order).to_bytes() == expected


@settings(max_examples=80, deadline=None)
@given(catalog=catalogs())
def test_an_image_read_from_a_file_gives_back_each_product_and_the_file_layout(catalog: list[dict[str, Any]]) -> None:
    data = serialize_catalog(catalog)
    image = CatalogImage.from_file_bytes(data, "products.json")
    assert image.to_bytes() == data
    assert [image.product(p["product_id"]) for p in catalog] == catalog


@settings(max_examples=80, deadline=None)
@given(catalog=catalogs())
def test_the_digest_of_a_file_in_our_layout_is_the_hash_list_of_its_entries_as_the_model_computes_it(
    catalog: list[dict[str, Any]]
) -> None:
    data = serialize_catalog(catalog)
    assert CatalogImage.from_file_bytes(data, "products.json").sha256 == catalog_digest(data)
    assert CatalogImage.from_products(catalog).sha256 == catalog_digest(data)
    assert catalog_digest(data) != __import__("hashlib").sha256(data).hexdigest()


def test_an_image_of_a_hand_formatted_file_keeps_the_files_sha_and_writes_the_canonical_layout() -> None:
    data = b'[ {"product_id":"A",  "name": "x"} ]'
    image = CatalogImage.from_file_bytes(data, "products.json")
    assert image.sha256 == __import__("hashlib").sha256(data).hexdigest()
    assert image.to_bytes() == serialize_catalog([{"product_id": "A", "name": "x"}])


def test_a_file_that_is_not_a_catalog_is_only_an_error_when_its_products_are_needed() -> None:
    image = CatalogImage.from_file_bytes(b"garbage", "products.json")
    assert image.sha256 is not None  # recovery and restore need no more than this
    with pytest.raises(CatalogCorruptError, match="not valid JSON"):
        image.product("A")


def test_a_change_never_alters_the_image_it_was_made_from() -> None:
    image = CatalogImage.from_products([{"product_id": "A", "v": 1}])
    before = image.to_bytes()
    image.with_changes({"A": {"product_id": "A", "v": 2}}, None)
    image.with_changes({"B": {"product_id": "B"}}, ["B", "A"])
    assert image.to_bytes() == before and image.ids == ["A"]


@settings(max_examples=80, deadline=None)
@given(catalog=catalogs())
def test_a_file_this_program_wrote_is_cut_into_the_same_entries_without_parsing(catalog: list[dict[str, Any]]) -> None:
    written = CatalogImage.from_products(catalog)
    cut = CatalogImage.from_own_bytes(written.to_bytes(), written.sha256)
    assert cut is not None and cut.ids == written.ids and cut.entries == written.entries


@pytest.mark.parametrize("layout", [
    b'[{"product_id": "A"}]\n',                                   # compact
    b'[\n    {\n        "product_id": "A"\n    }\n]\n',            # 4-space indent
    b'[\n  {\n    "name": "no id at the top level",\n    "x": {\n      "product_id": "A"\n    }\n  }\n]\n',
    b'[\n  {\n    "product_id": "A"\n  },\n  {\n    "product_id": "A"\n  }\n]\n',  # a repeated id
])
def test_a_file_of_another_layout_is_not_cut_but_left_to_the_parser(layout: bytes) -> None:
    assert CatalogImage.from_own_bytes(layout, None) is None


def test_a_file_in_our_layout_with_one_product_written_otherwise_is_parsed_and_rewritten_canonically() -> None:
    ours = serialize_catalog([{"product_id": "A", "price": 1.5}, {"product_id": "B", "price": 2.0}])
    edited = ours.replace(b'"price": 1.5', b'"price": 1.50')  # same value, another spelling
    image = CatalogImage.from_file_bytes(edited, "products.json")
    assert CatalogImage.from_own_bytes(edited, None, verify=True) is None
    assert image.to_bytes() == ours and image.ids == ["A", "B"]


@settings(max_examples=100, deadline=None)
@given(catalog=catalogs(), data=st.data())
def test_a_file_another_writer_changed_is_cut_like_the_known_image_into_the_same_entries(
    catalog: list[dict[str, Any]], data: st.DataObject
) -> None:
    known = CatalogImage.from_products(catalog)
    ids = list(known.ids)
    replaced = data.draw(st.lists(st.sampled_from(ids), unique=True) if ids else st.just([]))
    new_ids = data.draw(st.lists(IDS.filter(lambda i: i not in ids), unique=True, max_size=3))
    order = list(ids)
    for new_id in new_ids:  # created products go anywhere, as placement by sequence may put them
        order.insert(data.draw(st.integers(0, len(order))), new_id)
    if data.draw(st.booleans()) and len(order) > 1:  # sometimes a move or a removal: not this path's shape
        order.pop(data.draw(st.integers(0, len(order) - 1)))
    changed = {pid: {"product_id": pid, "v": data.draw(VALUES)} for pid in [*replaced, *new_ids] if pid in order}
    after = known.with_changes(changed, order)
    written = after.to_bytes()
    cut = CatalogImage.from_own_bytes_like(written, "sha", known)
    whole = CatalogImage.from_own_bytes(written, "sha")
    assert whole is not None
    if cut is not None:
        assert cut.ids == whole.ids == order and cut.entries == whole.entries
    else:
        # Only refused when a known product moved or went (or there was nothing known to go by).
        assert not ids or not order or [i for i in order if i in known.position] != ids


@contextmanager
def rebase_at(count: int) -> Iterator[None]:
    """Images keep up to ``count`` new entries over their file, whatever its size (these are small)."""
    saved = catalog_image_parts.REBASE_AT, catalog_image_parts.PART_BYTES
    catalog_image_parts.REBASE_AT, catalog_image_parts.PART_BYTES = count, 1
    try:
        yield
    finally:
        catalog_image_parts.REBASE_AT, catalog_image_parts.PART_BYTES = saved


@st.composite
def change_chains(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[dict[str, dict[str, Any]], list[str] | None, bool]]]:
    """A catalog of up to 40 products and 1-4 changes after it: (changed products, order or None, sealed after)."""
    ids = draw(st.lists(IDS, unique=True, max_size=40))
    catalog = [{"product_id": product_id, "v": draw(st.integers(0, 3))} for product_id in ids]
    chain, current = [], list(ids)
    for _ in range(draw(st.integers(1, 4))):
        replaced = draw(st.lists(st.sampled_from(current), unique=True, max_size=5)) if current else []
        new_ids = draw(st.lists(IDS.filter(lambda i, known=tuple(current): i not in known), unique=True, max_size=3))
        shape = draw(st.sampled_from(["same", "appended", "inserted", "shuffled"]))
        order = None if shape == "same" and not new_ids else [*current, *new_ids]
        if shape == "inserted":  # as placement by sequence does: new products before the last few
            at = draw(st.integers(0, len(current)))
            order = [*current[:at], *new_ids, *current[at:]]
        if shape == "shuffled" and order is not None:
            order = draw(st.permutations(order))
        changed = {pid: {"product_id": pid, "v": draw(VALUES)} for pid in [*replaced, *new_ids]}
        chain.append((changed, order, draw(st.booleans())))
        current = list(order) if order is not None else current
    return catalog, chain


@settings(max_examples=150, deadline=None)
@given(case=change_chains(), overlay=st.sampled_from([0, 1, 3, catalog_image_parts.REBASE_AT]))
def test_any_chain_of_changes_and_writes_serializes_exactly_as_the_full_dump_of_a_plain_model(
    case: tuple[list[dict[str, Any]], list[tuple[dict[str, dict[str, Any]], list[str] | None, bool]]], overlay: int,
) -> None:
    catalog, chain = case
    model = {p["product_id"]: p for p in catalog}  # the reference: a dict and an order, dumped whole
    order = [p["product_id"] for p in catalog]
    with rebase_at(overlay):  # how many new entries an image keeps over its file before joining them
        image = CatalogImage.from_own_bytes(serialize_catalog(catalog), "sha") or CatalogImage.from_products(catalog)
        for step, (changed, new_order, sealed) in enumerate(chain):
            if step % 2 and new_order is not None and new_order[:len(order)] == order:
                image = image.with_changes(changed, None, new_order[len(order):])  # as a merge says "appended"
            else:
                image = image.with_changes(changed, new_order)
            model.update(changed)
            order = list(new_order) if new_order is not None else order
            expected = serialize_catalog([model[p] for p in order])
            assert b"".join(image.parts()) == expected
            assert image.to_bytes() == expected
            assert [image.product(p) for p in order] == [model[p] for p in order]
            if sealed:  # written: as its parts (the overlay stays, up to its limit), or joined past it
                image.parts()
                # The digest a commit records, from the kept digests of the entries: the model's
                # digest of the bytes written.
                assert image.digest() == catalog_digest(expected)
                image = image.sealed_as(image.digest())
                assert image.to_bytes() == expected and image.ids == order
        assert image.digest() == catalog_digest(b"".join(image.parts()))


@settings(max_examples=150, deadline=None)
@given(catalog=catalogs(), data=st.data())
def test_new_products_placed_before_the_last_few_are_laid_over_the_file_and_serialize_as_the_full_dump(
    catalog: list[dict[str, Any]], data: st.DataObject
) -> None:
    ids = [p["product_id"] for p in catalog]
    model = {p["product_id"]: p for p in catalog}
    with rebase_at(catalog_image_parts.REBASE_AT):
        image = CatalogImage.from_own_bytes(serialize_catalog(catalog), "sha") or CatalogImage.from_products(catalog)
        if data.draw(st.booleans()) and ids:  # an overlay already there, written or not
            earlier = {pid: {"product_id": pid, "v": data.draw(VALUES)}
                       for pid in data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))}
            image = image.with_changes(earlier, None)
            model.update(earlier)
            if data.draw(st.booleans()):
                image.parts()
                image = image.sealed_as(image.digest())  # as a commit does: the new entries' digests kept
        # Placement by sequence: a batch's new products go before those a later batch created.
        at = data.draw(st.integers(0, max(len(ids) - 1, 0)))
        new_ids = data.draw(st.lists(IDS.filter(lambda i: i not in model), unique=True, min_size=1, max_size=3))
        order = [*ids[:at], *new_ids, *ids[at:]]
        replaced = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=4)) if ids else []
        changed = {pid: {"product_id": pid, "v": data.draw(VALUES)} for pid in [*replaced, *new_ids]}
        fresh_before = len(image._fresh)
        after = image.with_changes(changed, order)
        if ids:  # only what changed or moved is laid anew: the file's other entries stay where they are
            assert after._base is not None and len(after._fresh) <= fresh_before + len(changed) + len(ids) - at
        model.update(changed)
        assert after.to_bytes() == serialize_catalog([model[p] for p in order])
        assert [after.product(p) for p in order] == [model[p] for p in order]
        assert after.position == {p: i for i, p in enumerate(order)} and after.ids == order
        assert after.digest() == catalog_digest(after.to_bytes())


def test_new_products_placed_far_before_the_end_by_a_late_batch_are_laid_over_the_file_not_rebuilt() -> None:
    # A batch that comes late (workers take a burst out of order) places its new products before
    # every product later batches created: hundreds of entries to move, past the overlay's limit.
    catalog = [{"product_id": f"P{n:04d}", "v": n} for n in range(1000)]
    image = CatalogImage.from_own_bytes(serialize_catalog(catalog), "sha")
    assert image is not None and len(image.ids) == 1000
    assert image._overlay_limit() < 300
    new = {"product_id": "NEW", "v": -1}
    order = [*image.ids[:700], "NEW", *image.ids[700:]]
    after = image.with_changes({"NEW": new}, order)
    # Laid over the file from the insertion on; before, a rebuild of every entry and of the index
    # per late batch made a 4-worker burst slower than a 2-worker one.
    assert after._base is not None and len(after._fresh) == 301
    expected = [*catalog[:700], new, *catalog[700:]]
    assert after.to_bytes() == serialize_catalog(expected)
    assert after.position == {p: i for i, p in enumerate(order)} and after.ids == order
    assert after.digest() == catalog_digest(after.to_bytes())


@settings(max_examples=150, deadline=None)
@given(case=change_chains(), known_is_written=st.booleans())
def test_a_long_file_another_writer_changed_is_cut_like_the_known_file_exactly_as_cut_whole(
    case: tuple[list[dict[str, Any]], list[tuple[dict[str, dict[str, Any]], list[str] | None, bool]]],
    known_is_written: bool,
) -> None:
    catalog, chain = case
    known = CatalogImage.from_products(catalog)
    if known_is_written:  # the known image may be one this process wrote after a change of its own
        known = known.with_changes(*chain[0][:2])
        known.parts()  # written as a commit writes it, then sealed
        known.sealed_as("sha")
    other = known
    for changed, order, _ in chain[1:] if known_is_written else chain:
        other = other.with_changes(changed, order)
    written = other.to_bytes()
    cut = CatalogImage.from_own_bytes_like(written, "sha", known)
    whole = CatalogImage.from_own_bytes(written, "sha")
    assert whole is not None
    if cut is None:  # refused only when a known product moved or went, or nothing was known
        assert not known.ids or [i for i in whole.ids if i in known.position] != known.ids
    else:
        assert cut.ids == whole.ids and cut.entries == whole.entries and cut.to_bytes() == written


def test_a_file_with_more_bytes_after_a_known_entry_is_not_cut_like_the_known_file() -> None:
    known = CatalogImage.from_products([{"product_id": "A"}, {"product_id": "B"}])
    a, b = (bytes(known.entry(0)), bytes(known.entry(1)))
    # A's bytes, then a second top-level id inside the same product: no entry of ours looks like this.
    forged = b"[\n" + a + b'xx\n    "product_id": "C"\n  },\n' + b + b"\n]\n"
    assert CatalogImage.from_own_bytes(forged, None) is None
    assert CatalogImage.from_own_bytes_like(forged, None, known) is None
