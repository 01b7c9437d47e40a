"""The command line: Click commands and their options only (main.py, options.py, tasks.py, models.py,
tools.py, distributed.py, views.py). Commands turn options into calls of the library and print through
`io`. Nothing here imports torch at module level: `squeeze --help` and Tab completion import this whole
package.

May import: `errors`, `environment`, `_version`, `io`, `checkpoint`, `store`, `precision`, `assembly`,
`tasks`, `api`, `integrations`, `serve`.
"""

from .main import main, squeeze

__all__ = ["main", "squeeze"]
