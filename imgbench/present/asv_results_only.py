"""``python -m imgbench.present.asv_results_only ARGS``: asv with a "repository" made of the results.

``imgbench dashboard --results DIR`` outside any checkout has no git history to give asv the
commits' order and dates; the result files carry both (``commit_hash``, ``date``), so this
stand-in for asv's repository class lets ``asv publish`` run from them alone. It uses asv's
``Repo`` base class, which asv does not document as an extension point: an asv upgrade may need
it adjusted (tests/cli/test_small_defects.py::test_dashboard_with_results_works_from_any_folder
runs it). Run only in a subprocess: importing it registers the class with asv.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from asv.repo import Repo


class ResultsOnlyRepo(Repo):
    """Commits and dates from the result files under ``url``; no checkout, no history beyond them."""

    dvcs = "imgbench-results-only"
    _default_branch = "main"

    def __init__(self, url, path):
        self.url = self.path = url
        self._dates = {}
        for name in glob.glob(os.path.join(url, "*", "*.json")):
            try:
                with open(name, encoding="utf-8") as f:
                    d = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(d, dict) and d.get("commit_hash"):
                self._dates[d["commit_hash"]] = d.get("date") or 0

    @classmethod
    def url_match(cls, url):
        return False

    def pull(self):
        pass

    def get_tags(self):
        return {}

    def get_revisions(self, commits):
        order = sorted(self._dates, key=lambda h: (self._dates[h], h))
        return {h: i for i, h in enumerate(order) if h in commits}

    def get_date_from_name(self, name):
        return self._dates[name]

    def get_branch_commits(self, branch):
        return list(self._dates)

    def get_hashes_from_range(self, range_spec):
        return list(self._dates)

    def get_range_spec(self, commit_a, commit_b):
        return f"{commit_a}..{commit_b}"

    def get_date(self, commit_hash):
        return self._dates[commit_hash]

    def get_name_from_hash(self, commit_hash):
        return None

if __name__ == "__main__":
    from asv.main import main

    sys.argv = ["asv", *sys.argv[1:]]
    sys.exit(main())
