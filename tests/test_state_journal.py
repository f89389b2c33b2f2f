"""The state file as a commit record: a journal of changes over a base segment, compacted, checked, collected."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from catalog_core.errors import CatalogCorruptError
from catalog_core.settings import Settings
from schemas import BatchStatus
from tests.helpers import product
from worker import state_journal
from worker.state import previous_state_path, read_state, serialize_state, state_path
from worker.store import CatalogStore

BASE_NAME = re.compile(r"^\.products\.json\.state\.[0-9a-f]{64}$")


def bases(catalog: Path) -> list[Path]:
    return sorted(p for p in catalog.parent.iterdir() if BASE_NAME.match(p.name))


def record(catalog: Path) -> dict:  # type: ignore[type-arg]
    return orjson.loads(state_path(catalog).read_bytes())


@pytest.fixture
def short_journal(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(state_journal, "JOURNAL_MAX_ENTRIES", 3)
    return 3


def test_a_commit_appends_its_changes_to_the_journal_and_leaves_the_base_alone(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    first = record(settings.catalog_path)
    store.apply([product("B")], "b2")
    second = record(settings.catalog_path)
    assert first["base"] == second["base"] and first["format"] == 2
    assert [list(entry["ledger"]) for entry in second["journal"]][-1] == ["b2"]
    assert "ledger" not in second and "versions" not in second  # only changes travel with each commit


def test_a_full_journal_is_compacted_into_a_new_base_and_old_bases_are_collected(
    settings: Settings, short_journal: int
) -> None:
    store = CatalogStore(settings)
    applied = [f"b{n}" for n in range(12)]
    for n, batch_id in enumerate(applied):
        store.apply([product(f"P{n}")], batch_id)
        assert len(record(settings.catalog_path)["journal"]) <= short_journal
        assert 1 <= len(bases(settings.catalog_path)) <= 2  # the state's, and .state.prev's when it differs
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and sorted(state.ledger) == sorted(applied)
    assert sorted(state.versions) == sorted(f"P{n}" for n in range(12))
    # What another process reads (no copy of its own) is the same.
    assert CatalogStore(settings).apply([product("P0")], "b0").status == BatchStatus.DUPLICATE


def test_compaction_trims_the_ledger_to_its_window(settings: Settings, short_journal: int) -> None:
    small = settings.model_copy(update={"ledger_max_ids": 4})
    store = CatalogStore(small)
    for n in range(10):
        store.apply([product(f"P{n}")], f"b{n}")
    state = read_state(state_path(small.catalog_path))
    assert state is not None
    # At least the window, at most one journal more; always the newest.
    assert 4 <= len(state.ledger) <= 4 + short_journal and "b9" in state.ledger and "b0" not in state.ledger


def test_a_missing_base_segment_is_a_clear_error_that_names_it(settings: Settings) -> None:
    CatalogStore(settings).apply([product("A")], "b1")
    [base] = bases(settings.catalog_path)
    base.unlink()
    state_journal_cache_cleared()
    with pytest.raises(CatalogCorruptError, match=rf"base segment {re.escape(base.name)} is missing"):
        read_state(state_path(settings.catalog_path))


def test_a_base_segment_changed_by_hand_is_refused(settings: Settings) -> None:
    CatalogStore(settings).apply([product("A")], "b1")
    [base] = bases(settings.catalog_path)
    base.write_bytes(base.read_bytes().replace(b'"applied"', b'"rejected"'))
    state_journal_cache_cleared()
    with pytest.raises(CatalogCorruptError, match="does not match its sha256"):
        read_state(state_path(settings.catalog_path))


def test_a_state_written_as_one_file_by_the_previous_release_is_migrated_at_the_next_commit(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    old_format = serialize_state(read_state(state_path(settings.catalog_path)))  # type: ignore[arg-type]
    assert orjson.loads(old_format)["format"] == 1
    state_path(settings.catalog_path).write_bytes(old_format)
    assert CatalogStore(settings).apply([product("A")], "b1").status == BatchStatus.DUPLICATE
    CatalogStore(settings).apply([product("B")], "b2")
    migrated = record(settings.catalog_path)
    assert migrated["format"] == 2 and migrated["base"] is not None
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and list(state.ledger) == ["b1", "b2"]


def test_a_base_left_by_a_commit_that_never_happened_is_collected(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    orphan = settings.catalog_path.with_name(".products.json.state." + "ab" * 32)
    orphan.write_bytes(b"{}")
    store.apply([product("B")], "b2")
    store.apply([product("C")], "b3")
    assert not orphan.exists()


def state_journal_cache_cleared() -> None:
    """Forget the bases this process parsed, as a fresh process would."""
    from worker import state_base

    state_base._BASES.clear()


def test_a_commit_whose_change_events_alone_pass_the_journal_limit_does_not_compact(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events leave the journal at the next write; a compaction keeps them: it could not shrink them.
    monkeypatch.setattr(state_journal, "JOURNAL_MAX_BYTES", 4096)
    store = CatalogStore(settings)
    store.apply([product("A")], "b0")
    first_base = record(settings.catalog_path)["base"]
    long_text = "x" * 3000
    store.apply([product(f"P{n}", description_long=long_text) for n in range(4)], "b1")
    after = record(settings.catalog_path)
    assert len(orjson.dumps(after["journal"][-1]["events"])) > 4096
    assert after["base"] == first_base, "the commit compacted for its own events"
    assert len(bases(settings.catalog_path)) == 1
    # A journal that really is full still compacts.
    store.apply([product(f"Q{n}") for n in range(40)], "b2")
    store.apply([product("A", product_name="renamed")], "b3")
    assert record(settings.catalog_path)["base"] != first_base


def test_each_journal_entry_is_serialized_once_however_many_commits_rewrite_the_record(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialized: list[dict] = []  # type: ignore[type-arg]
    real = state_journal.serialize_entry
    monkeypatch.setattr(state_journal, "serialize_entry", lambda entry: serialized.append(entry) or real(entry))
    store = CatalogStore(settings)
    applied = [f"b{n}" for n in range(12)]
    for n, batch_id in enumerate(applied):
        store.apply([product(f"P{n % 5}", product_name=f"name {n}")], batch_id)
    journal = record(settings.catalog_path)["journal"]
    assert len(journal) == 11  # b1..b11: b0 started the base, and no compaction since
    # b1..b10, each once when its events were published (b11's entry still carries its own, written
    # with the record): not once per commit that rewrote it (10 + 9 + ... + 1 = 55 times).
    assert [list(entry["ledger"]) for entry in serialized] == [[f"b{n}"] for n in range(1, 11)]
    # What a process without the kept bytes reads is every batch and product.
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and list(state.ledger) == applied
    assert sorted(state.versions) == [f"P{n}" for n in range(5)]
    # Each product name was last written by the last of b0..b11 that names it.
    assert all(state.versions[f"P{n}"]["product_name"] == state.ledger[f"b{n + 5 * ((11 - n) // 5)}"]["sequence"]
               for n in range(5))


def test_two_writers_taking_turns_each_write_every_batch_of_the_other(settings: Settings) -> None:
    # One process keeps the bytes of the last record it encoded, whichever writer it was; each
    # commit brings the other's entries, read from the file, as new objects.
    writers = [CatalogStore(settings), CatalogStore(settings)]
    applied = [f"b{n}" for n in range(9)]
    for n, batch_id in enumerate(applied):
        writers[n % 2].apply([product(f"P{n}")], batch_id)
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and list(state.ledger) == applied
    assert sorted(state.versions) == [f"P{n}" for n in range(9)]


def test_the_base_that_state_prev_names_is_kept_even_when_its_record_carries_megabytes_of_events(
    settings: Settings, short_journal: int
) -> None:
    # A group commit at 10,000 products carries megabytes of change events in its record. When the
    # next commit compacts, that record becomes .state.prev, and the base it names must stay:
    # a roll back (recovery) reads .state.prev with its base.
    store = CatalogStore(settings)
    previous = settings.catalog_path.with_name("products.json.state.prev")
    for number, kind in enumerate("bssbsbssbs"):  # a small commit right after a big one compacts (the 5th)
        if kind == "b":
            store.apply([product(f"P{number}-{m}", description_long="x" * 60_000) for m in range(50)], f"b{number}")
            assert state_path(settings.catalog_path).stat().st_size > 3_000_000
        else:
            store.apply([product("A", product_name=f"name {number}")], f"b{number}")
        if previous.exists():
            named = orjson.loads(previous.read_bytes())["base"]
            assert settings.catalog_path.with_name(f".products.json.state.{named}").exists(), f"after b{number}"
            assert read_state(previous) is not None


def test_a_journal_of_large_entries_is_compacted_once_its_rewrites_cost_what_a_new_base_would(
    settings: Settings,
) -> None:
    # Each commit rewrites the record; a compaction writes a base (its bytes and a file). Here each
    # commit's entry holds 50 products' field versions: under the fixed limits alone (64 entries,
    # 1 MiB) the record would grow all along these 30 commits, to about half a megabyte.
    store = CatalogStore(settings)
    store.apply([product(f"P{m}") for m in range(50)], "start")
    allowance = 2 * state_journal.BASE_FILE_BYTES

    def journal_now() -> tuple[str, int, int, int]:
        """The record's base, its size and entries without change events, and the base's size."""
        written = record(settings.catalog_path)
        journal = [{k: v for k, v in entry.items() if k != "events"} for entry in written["journal"]]
        base_bytes = settings.catalog_path.with_name(f".products.json.state.{written['base']}").stat().st_size
        return written["base"], len(orjson.dumps({**written, "journal": journal})), len(journal), base_bytes

    before = journal_now()
    compactions = 0
    for n in range(30):
        store.apply([product(f"P{m}", product_name=f"name {n}-{m}") for m in range(50)], f"b{n}")
        now = journal_now()
        base, size, entries, base_bytes = now
        if base == before[0]:
            assert entries * size < 2 * base_bytes + allowance, f"b{n}: the journal outgrew its base"
        else:
            compactions += 1
            # Only once the journal (one entry more than before) would have cost a base.
            _, last_size, last_entries, last_base = before
            grown = last_size + last_size // max(last_entries, 1)
            assert (last_entries + 1) * grown >= 0.9 * (2 * last_base + allowance), f"b{n} compacted early"
        before = now
    assert compactions >= 3
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and {f"b{n}" for n in range(30)} <= set(state.ledger)


def test_after_a_compaction_the_base_of_state_prev_is_kept_only_while_prev_names_it(
    settings: Settings, short_journal: int
) -> None:
    store = CatalogStore(settings)
    number = 0
    while True:  # up to the commit that compacts: the state names a new base, .state.prev the old one
        store.apply([product(f"P{number}")], f"b{number}")
        number += 1
        if not previous_state_path(settings.catalog_path).exists():
            continue  # the first commit
        current, previous = record(settings.catalog_path), orjson.loads(previous_state_path(settings.catalog_path).read_bytes())
        if current["base"] != previous["base"]:
            break
    old_base = settings.catalog_path.with_name(f".products.json.state.{previous['base']}")
    state = read_state(state_path(settings.catalog_path))
    assert state is not None
    prev_file = previous_state_path(settings.catalog_path)
    # Named with JSON escapes (a hand edit): still named.
    escaped = "".join(f"\\u{ord(c):04x}" for c in previous["base"])
    prev_file.write_bytes(prev_file.read_bytes().replace(f'"base":"{previous["base"]}"'.encode(), f'"base":"{escaped}"'.encode()))
    assert orjson.loads(prev_file.read_bytes())["base"] == previous["base"]
    assert state_journal.collect_bases(settings.catalog_path, state) == [] and old_base.exists()
    # Named by nobody any more: collected.
    prev_file.write_bytes(orjson.dumps({**previous, "base": current["base"]}))
    assert state_journal.collect_bases(settings.catalog_path, state) == [old_base] and not old_base.exists()
