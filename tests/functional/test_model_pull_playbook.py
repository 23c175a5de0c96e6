"""model_pull through real ansible-playbook (action plugin, async job, callbacks, -vvv output) against
the local Ollama API server and local Hub endpoint (emulated servers; Ansible, the module,
huggingface_hub are real)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import yaml

from tests.support.ansible_run import REPO, VENV_BIN, ansible_env
from tests.support.hf_server import tiny_model_files
from tests.support.model_pull_fixtures import hf_hub, ollama  # noqa: F401  pylint: disable=unused-import


def _write_play(tmp_path, tasks, env=None):
    """Write a localhost play of ``tasks``; return its path and the environment to run it with."""
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path, ansible_env({"ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
                              "ANSIBLE_ASYNC_DIR": str(tmp_path / "async"), **(env or {})})


def _play(tmp_path, tasks, *flags, timeout=240, env=None):
    path, env = _write_play(tmp_path, tasks, env)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", str(path), *flags],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout


class _Playbook:
    """ansible-playbook running in the background; its output lines collected as they are printed."""

    def __init__(self, tmp_path, tasks):
        path, env = _write_play(tmp_path, tasks)
        self.lines, self.ended = [], False
        self._cond = threading.Condition()
        self.proc = subprocess.Popen([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", str(path)],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for_lines(self, predicate, count, timeout):
        """Wait until ``count`` output lines satisfy ``predicate`` (or the run ended); return those lines."""
        with self._cond:
            self._cond.wait_for(lambda: self.ended or len([x for x in self.lines if predicate(x)]) >= count,
                                timeout)
            return [x for x in self.lines if predicate(x)]

    def finish(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        with self._cond:
            self._cond.wait_for(lambda: self.ended, timeout)
            return rc, "\n".join(self.lines)


def test_progress_is_shown_while_a_slow_pull_runs(ollama, tmp_path):  # noqa: F811
    """The pull pauses at 1 MiB of 2 MiB until the test has seen the progress lines: no race with its speed."""
    ollama.remote.clear()
    ollama.publish("big:70b", size=2 * 1024 * 1024)
    ollama.behave(hold_at=1024 * 1024)
    task = {"name": "pull a big model", "ailab.gpu_lab.model_pull": {
        "backend": "ollama", "source": "big:70b", "ollama_url": ollama.url, "progress_interval": 1},
        "register": "pulled"}
    check = {"name": "result is the module's", "ansible.builtin.assert": {"that": [
        "pulled is changed", "pulled.digest == '%s'" % ollama.remote["big:70b"].digest,
        "pulled.ansible_job_id is not defined"]}}
    again = {"name": "second run", "ailab.gpu_lab.model_pull": {
        "backend": "ollama", "source": "big:70b", "ollama_url": ollama.url}, "register": "again"}
    check2 = {"name": "second run unchanged", "ansible.builtin.assert": {"that": ["again is not changed"]}}
    run = _Playbook(tmp_path, [task, check, again, check2])
    try:
        # two progress polls while the pull is paused half-way: the line is printed again and again while it runs
        halfway = run.wait_for_lines(lambda x: x.startswith("model_pull [localhost] big:70b: pulling ")
                                     and "1.0 MiB / 2.0 MiB (50.0%)" in x, 2, timeout=180)
        assert ollama.holding.is_set(), run.lines
        assert len(halfway) >= 2, run.lines
        assert not ollama.local, "the pull finished while the server still held it"
    finally:
        ollama.release()
    rc, out = run.finish(timeout=180)
    assert rc == 0, out
    assert "changed=1" in out
    assert "big:70b" in ollama.local
    # the async job and its progress file are cleaned up
    assert not [f for f in os.listdir(tmp_path / "async") if not f.startswith(".")], os.listdir(tmp_path / "async")


def test_check_mode_and_diff_through_ansible(ollama, tmp_path):  # noqa: F811
    task = {"name": "pull", "ailab.gpu_lab.model_pull": {"backend": "ollama", "source": "tiny:1b",
                                                         "ollama_url": ollama.url}}
    rc, out = _play(tmp_path, [task], "--check", "--diff")
    assert rc == 0, out
    assert "+tiny:1b" in out and "changed=1" in out
    assert not ollama.local and not [r for r in ollama.requests if r[1] == "/api/pull"]


def test_hf_token_never_appears_even_at_vvv(hf_hub, tmp_path):  # noqa: F811
    hf_hub.add_repo("ailab-test/private", [tiny_model_files(0)], private=True)
    commit = hf_hub.repos["ailab-test/private"].order[0]
    wrong = "hf_wrong_" + "Zq9" * 10
    base = {"backend": "huggingface", "source": "ailab-test/private", "revision": commit,
            "cache_dir": str(tmp_path / "hub"), "hf_endpoint": hf_hub.url, "progress_interval": 1}
    tasks = [
        {"name": "download with the right token", "ailab.gpu_lab.model_pull": dict(
            base, hf_token="{{ lookup('ansible.builtin.env', 'T_GOOD') }}"),
         "register": "good"},
        {"name": "a wrong token fails with a 401 message", "ailab.gpu_lab.model_pull": dict(
            base, hf_token="{{ lookup('ansible.builtin.env', 'T_WRONG') }}", cache_dir=str(tmp_path / "other")), "register": "bad", "ignore_errors": True},
        {"name": "check", "ansible.builtin.assert": {"that": [
            "good is changed", "bad is failed", "'HTTP 401' in bad.msg"]}},
    ]
    # the tokens come from the environment (as from .env), not from the playbook text that Ansible may quote
    rc, out = _play(tmp_path, tasks, "-vvv", env={"T_GOOD": hf_hub.token, "T_WRONG": wrong})
    assert rc == 0, out
    assert "rejected the token" in out and "good is changed" not in out.split("PLAY RECAP")[-1]
    assert hf_hub.token not in out, "the HF token leaked into -vvv output"
    assert wrong not in out, "the wrong HF token leaked into -vvv output"
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in out
