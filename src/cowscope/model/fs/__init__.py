"""Files, the page cache, and the /proc views."""
