"""The entry point: every subcommand is registered, a missing one fails at once, --help stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from cowscope.cli import main as cli_main

from .helpers import cowscope

CLI_DIR = Path(cli_main.__file__).parent


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    r = cowscope("--help")
    assert r.returncode == 0
    for name in ("demo", "run", "bench", "malloc", "verify", "inspect", "export", "learn"):
        assert name in r.stdout
        sub = cowscope(name, "--help")
        assert sub.returncode == 0 and "usage: cowscope " + name in sub.stdout


def test_version_names_the_glibc_followed():
    r = cowscope("--version")
    assert "ptmalloc2 as in glibc 2.36" in r.stdout


def test_no_subcommand_prints_help_and_exits_2():
    r = cowscope()
    assert r.returncode == 2 and "usage: cowscope" in r.stdout


def test_missing_subcommand_module_is_an_import_error_at_once():
    # as if cli/export.py had been deleted: importing the entry point must fail, not drop the command
    r = _python("import sys; sys.modules['cowscope.cli.export'] = None\n"
                "try:\n    import cowscope.cli.main\nexcept ImportError as e:\n    print('ImportError', e.name)\n"
                "else:\n    from cowscope.cli.main import build_parser\n    build_parser().print_help()\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ImportError cowscope.cli.export"


def test_every_subcommand_module_is_registered():
    # a module under cli/ with a register() that the entry point does not list would be dead code
    defining = {f.stem for f in CLI_DIR.glob("*.py")
                if any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in ast.parse(f.read_text()).body)}
    listed = {c.__name__.rsplit(".", 1)[-1] for c in cli_main.COMMANDS}
    assert defining == listed
    for command in cli_main.COMMANDS:
        assert callable(command.register) and callable(command.run), command.__name__


def test_help_does_not_import_the_model():
    # --help and argument errors must not pay for the model (numpy arrays of frames, malloc, ...)
    r = _python("import sys\nfrom cowscope.cli.main import main\n"
                "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                "print(sorted(m for m in sys.modules if m.startswith(('cowscope.model', 'plotly'))))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_help_does_not_import_numpy_or_the_inspector():
    # `cowscope --help` and a subcommand's --help build every parser: none may load numpy, rich or
    # prometheus_client (about 0.3 s of imports) — the inspector and the exporter import them when run
    code = ("import sys\nfrom cowscope.cli.main import main\n"
            "for argv in (['--help'], ['inspect', '--help'], ['export', '--help'], ['bench', '--help'],"
            " ['run', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'rich', 'prometheus_client')"
            " or m.startswith('cowscope.inspect.') and m != 'cowscope.inspect.options'))")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
