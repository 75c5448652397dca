"""Comparing configuration documents: the summary's entries and the diff page's lines."""

from __future__ import annotations

from routing.versions.diff import DiffLine, document_changes, text_diff

BEFORE = {
    "version": 1,
    "providers": [{"name": "local", "kind": "stub"}],
    "tenants": [{"slug": "acme", "name": "Acme"}, {"slug": "gone", "name": "Gone"}],
    "routes": [
        {"name": "chat", "targets": [{"provider": "local", "model": "a"}]},
        {"name": "chat", "tenant": "acme", "targets": []},
    ],
    "rate_limits": {"rpm": 10},
}
AFTER = {
    "version": 1,
    "providers": [{"name": "local", "kind": "stub"}],
    "tenants": [{"slug": "acme", "name": "Acme Corp", "status": "suspended"}],
    "routes": [
        {"name": "chat", "strategy": "cost", "targets": [{"provider": "local", "model": "b"}]},
        {"name": "chat", "tenant": "acme", "targets": []},
    ],
    "redaction_rules": [{"name": "ticket", "pattern": "TCK-[0-9]+"}],
}


def test_it_names_each_entry_added_removed_or_changed_and_what_of_it():
    assert document_changes(BEFORE, AFTER) == [
        "tenant acme: name, status changed",
        "tenant gone removed",
        "route chat (global): strategy, targets changed",  # acme's own `chat` is unchanged
        "redaction rule ticket added",
        "global rate limits changed",
    ]


def test_the_same_document_has_no_change_and_anything_else_is_read_safely():
    assert document_changes(AFTER, AFTER) == []
    assert document_changes({}, {}) == []
    assert document_changes(None, {"routes": ["not a mapping", {"name": "x"}]}) == [
        "route x (global) added"
    ]


def test_a_text_diff_has_both_sides_line_numbers():
    old = "a\nb\nc\nd\n"
    new = "a\nB\nc\nd\ne\n"
    diff = text_diff(old, new)
    assert (diff.added, diff.removed, diff.empty) == (2, 1, False)
    assert diff.lines == [
        DiffLine("hunk", "@@ -1,4 +1,5 @@"),
        DiffLine("same", "a", 1, 1),
        DiffLine("remove", "b", 2, None),
        DiffLine("add", "B", None, 2),
        DiffLine("same", "c", 3, 3),
        DiffLine("same", "d", 4, 4),
        DiffLine("add", "e", None, 5),
    ]


def test_context_is_three_lines_and_far_changes_are_separate_hunks():
    old = "\n".join(str(n) for n in range(1, 21))
    new = old.replace("2\n", "two\n", 1).replace("19", "nineteen")
    diff = text_diff(old, new)
    hunks = [line.text for line in diff.lines if line.kind == "hunk"]
    assert hunks == ["@@ -1,5 +1,5 @@", "@@ -16,5 +16,5 @@"]
    assert [line.new_number for line in diff.lines if line.kind == "add"] == [2, 19]


def test_identical_documents_make_an_empty_diff():
    diff = text_diff("a: 1\n", "a: 1\n")
    assert diff.empty and diff.lines == []
