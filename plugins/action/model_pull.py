# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ailab.gpu_lab.model_pull: shows progress of long pulls on the controller.

How (docs/model_pull.md, "Progress"):

1. ``state=present``: run the module once in check mode (a plan). Nothing to do -> return that
   result; no transfer, no async job. (``state=latest`` always pulls, so it skips the plan.)
2. Start the module as an Ansible async job (``async_wrapper`` daemonises it on the target, so
   the transfer survives between polls) with ``progress_file`` pointing into the async dir.
3. Until the job finishes: ``async_status`` and, every ``progress_interval`` seconds, read the
   progress file (``slurp``) and print one line: bytes, total, percent, rate.
4. Return the module's own result and clean the job up.

Not used (the module runs as usual) in check mode, with the task's own ``async``, with
``progress: false``, and for ``state`` absent/unloaded (quick operations).
"""
from __future__ import annotations

import base64
import json
import time
import uuid

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "ailab.gpu_lab.model_pull"
_JOB_KEYS = ("ansible_job_id", "finished", "started", "results_file", "erased")


def human_bytes(n):
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024.0 or unit == "TiB":
            return ("%.0f %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%.1f TiB" % n


def progress_line(host, data):
    """One human line from a progress file's JSON."""
    done, total = data.get("completed") or 0, data.get("total") or 0
    parts = ["model_pull [%s] %s: %s" % (host, data.get("source"), data.get("status") or "working")]
    if total:
        parts.append("%s / %s (%.1f%%)" % (human_bytes(done), human_bytes(total), 100.0 * done / total))
    elif done:
        parts.append(human_bytes(done))
    if data.get("rate"):
        parts.append("%s/s" % human_bytes(data["rate"]))
        if total and data["rate"] > 0 and total > done:
            eta = int((total - done) / data["rate"])
            parts.append("ETA %dm%02ds" % (eta // 60, eta % 60))
    return ", ".join(parts)


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        state = args.get("state", "present")
        try:
            want_progress = boolean(args.get("progress", True), strict=False)
        except TypeError:
            want_progress = True
        if (not want_progress or self._task.async_val or self._task.check_mode
                or state not in ("present", "latest")):
            return self._plain(result, args, task_vars)

        if state == "present":
            plan = self._run_in_check_mode(args, task_vars)
            if plan.get("failed") or not plan.get("changed"):
                self._remove_tmp_path(self._connection._shell.tmpdir)
                result.update(plan)
                return result
        try:
            interval = max(1, int(args.get("progress_interval", 10)))
            limit = int(args.get("max_duration", 21600)) + 120
        except (TypeError, ValueError):
            return self._plain(result, args, task_vars)  # let the module report the bad value
        result.update(self._run_async(args, task_vars, interval, limit))
        return result

    # ---- helpers -----------------------------------------------------------------------------
    def _plain(self, result, args, task_vars):
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars,
                                           wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _run_in_check_mode(self, args, task_vars):
        saved = self._task.check_mode
        self._task.check_mode = True
        try:
            return self._execute_module(module_name=MODULE, module_args=dict(args), task_vars=task_vars)
        finally:
            self._task.check_mode = saved

    def _async_dir(self):
        return self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))

    def _run_async(self, args, task_vars, interval, limit):
        host = task_vars.get("inventory_hostname", "?") if task_vars else "?"
        async_dir = self._async_dir()
        progress_file = self._connection._shell.join_path(async_dir, "ailab_model_pull_%s.json" % uuid.uuid4().hex)
        module_args = dict(args, progress_file=progress_file)

        saved = self._task.async_val
        self._task.async_val = limit
        try:
            started = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars,
                                           wrap_async=True)
        finally:
            self._task.async_val = saved
        if started.get("failed") or not started.get("ansible_job_id"):
            return started
        jid = started["ansible_job_id"]
        display.display("model_pull [%s] %s: started (job %s); progress every %d s"
                        % (host, args.get("source"), jid, interval))

        status = {}
        sleep, last_line = 0.5, time.monotonic()
        try:
            while True:
                time.sleep(sleep)
                sleep = min(sleep * 2, float(interval))
                status = self._execute_module(module_name="ansible.legacy.async_status",
                                              module_args={"jid": jid, "mode": "status", "_async_dir": async_dir},
                                              task_vars=task_vars)
                if status.get("finished") or (status.get("failed") and not status.get("started")):
                    break
                if time.monotonic() - last_line >= interval - 0.25:
                    last_line = time.monotonic()
                    line = self._read_progress(progress_file, host, task_vars)
                    if line:
                        display.display(line)
        finally:
            self._execute_module(module_name="ansible.legacy.async_status",
                                 module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir},
                                 task_vars=task_vars)
            self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in _JOB_KEYS:
            status.pop(key, None)
        for key in ("stdout", "stderr", "stdout_lines", "stderr_lines"):
            if not status.get(key):
                status.pop(key, None)
        return status

    def _read_progress(self, path, host, task_vars):
        res = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path}, task_vars=task_vars)
        if res.get("failed") or "content" not in res:
            return None
        try:
            data = json.loads(base64.b64decode(res["content"]).decode("utf-8"))
        except (ValueError, TypeError):
            return None
        return progress_line(host, data)
