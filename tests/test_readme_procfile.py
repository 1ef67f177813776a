"""The README's process table is the Procfile's: the same processes, and for each RQ worker the
same queues and options, for the web process the same daphne settings."""

import re
import shlex

from devservices import stack
from tests.conftest import ROOT


def readme_processes() -> dict[str, str]:
    """The README's `| process | what |` table: name -> the row's text."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| process | what |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name = re.match(r"\| `([a-z0-9_]+)`", line)
        assert name, f"a README process row without a process name: {line}"
        rows[name[1]] = line
    return rows


def test_the_readme_names_exactly_the_procfiles_processes():
    assert set(readme_processes()) == set(stack.procfile_commands())


def test_each_worker_row_gives_the_procfiles_queues_and_options():
    rows = readme_processes()
    for name, command in stack.procfile_commands().items():
        arguments = stack.rqworker_arguments(command)
        if arguments:
            assert f"rqworker {' '.join(arguments)}" in rows[name], (name, arguments)


def test_the_web_row_gives_the_procfiles_daphne_settings():
    command = stack.procfile_commands()["web"]
    words = shlex.split(command)
    timeout = words[words.index("--websocket_connect_timeout") + 1]
    threads = re.search(r"ASGI_THREADS:-(\d+)", command)[1]
    row = readme_processes()["web"]
    assert f"--websocket_connect_timeout {timeout}" in row and f"ASGI_THREADS={threads}" in row


def test_each_row_names_the_management_commands_its_process_runs():
    rows = readme_processes()
    for name, command in stack.procfile_commands().items():
        for managed in re.findall(r"manage\.py (\w+)", command):
            assert f"manage.py {managed}" in rows[name], (name, managed)
