"""Whether a campaign's pages look consistent (pure): Optimove gives no total and no continuation
token, so the only evidence of a paging problem is in the pages themselves.

- A page larger than the `$top` asked for: the server ignores our page size.
- A short page followed by more rows: the server caps pages below `$top` (harmless, since paging
  goes on to the empty page, but worth knowing: `optimove_page_end = "short"` would truncate).
- Rows that repeat a customer already read: `$skip` walked over a list whose order changed
  between pages, so as many other customers may have been skipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PageCheck:
    top: int
    short_seen: int | None = None  # size of the last short page, while no longer one has come
    cap_noted: bool = False
    repeated: int = 0

    def observe(self, rows: int, inserted: int) -> list[str]:
        """One page's row count and how many of its rows were new; returns new notes."""
        notes = []
        if rows > self.top:
            notes.append(f"a page held {rows} rows for $top={self.top}")
        if rows and self.short_seen is not None and not self.cap_noted:
            self.cap_noted = True
            notes.append(
                f"the server serves at most {self.short_seen} rows a page ($top={self.top}); "
                "paging went on to the empty page"
            )
        if 0 < rows < self.top:
            self.short_seen = rows
        if inserted < rows:
            self.repeated += rows - inserted
            notes.append(
                f"{rows - inserted} rows repeated customers already read ({self.repeated} in all): "
                "the server's order may have shifted between pages, and as many customers may be missing"
            )
        return notes
