"""provenance.tree_dirty: code changes count, the results documents the jobs write do not."""

from bgshift_tf.workflow import provenance


def test_changes_under_docs_do_not_make_the_tree_dirty(monkeypatch):
    outputs = {"clean": "", "docs": " M docs/RESULTS.md\n M docs/study/seed_0.json\n",
               "code": " M docs/RESULTS.md\n M bgshift_tf/models/layers.py\n",
               "renamed": "R  docs/old.md -> bgshift_tf/new.py\n", "outside": None}
    for case, expected in (("clean", False), ("docs", False), ("code", True), ("renamed", True),
                           ("outside", None)):
        monkeypatch.setattr(provenance, "_git", lambda *args, out=outputs[case]: out)
        assert provenance.tree_dirty() is expected, case
