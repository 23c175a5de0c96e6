"""Strategy ailab.gpu_lab.linear (plugins/strategy/linear.py): the collection's filters and lookups imported in the
parent process under the very module names ansible-core's plugin loader looks up, so that a worker forked from it
reuses them instead of loading and compiling them again.

Each case runs in a fresh interpreter (the real ansible-core plugin loader and collection finder, nothing imported
before), so what the preload imported is all that is in sys.modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader, filter_loader, lookup_loader, strategy_loader
init_plugin_loader([%(collections)r])
pkg = "ansible_collections.ailab.gpu_lab.plugins."
before = sorted(m for m in sys.modules if m.startswith(pkg))
from ansible_collections.ailab.gpu_lab.plugins.strategy import linear
loaded = linear.preload()
mods = dict((m, id(sys.modules[m])) for m in sys.modules if m.startswith(pkg))
# What a worker does: the loader resolves a filter (every filter file of the collection) and a lookup by name.
deploy_labels = filter_loader.get("ailab.gpu_lab.deploy_labels")
manifest = lookup_loader.get("ailab.gpu_lab.manifest")
after = dict((m, id(sys.modules[m])) for m in sys.modules if m.startswith(pkg))
print(json.dumps({
    "before": before, "loaded": loaded, "preloaded": sorted(mods),
    "new_after_loader": sorted(set(after) - set(mods)),
    "replaced": sorted(m for m in mods if after.get(m) != mods[m]),
    "filter_path": getattr(deploy_labels, "_original_path", None),
    "lookup_path": getattr(manifest, "_original_path", None),
    "strategy": strategy_loader.find_plugin("ailab.gpu_lab.linear"),
}))
"""


def _run():
    script = SCRIPT % {"collections": os.path.join(REPO, ".collections")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _plugin_files(kind):
    directory = os.path.join(REPO, "plugins", kind)
    return sorted("ansible_collections.ailab.gpu_lab.plugins.%s.%s" % (kind, f[:-3])
                  for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_"))


def test_preload_imports_every_filter_and_lookup_with_the_module_utils_they_use():
    out = _run()
    assert out["before"] == [], out["before"]   # a fresh interpreter: nothing of the collection yet
    assert sorted(out["loaded"]) == _plugin_files("filter") + _plugin_files("lookup")
    for used in ("deploy", "catalog", "components", "kube_client"):   # what the deploy filters and lookups import
        assert "ansible_collections.ailab.gpu_lab.plugins.module_utils." + used in out["preloaded"], used
    assert out["strategy"] and out["strategy"].endswith(os.path.join("plugins", "strategy", "linear.py"))


def test_the_plugin_loader_reuses_the_preloaded_modules_instead_of_loading_them_again():
    """What a forked worker does after the preload: resolving a filter loads every filter file of the collection and
    a lookup its file; each must be the module already imported (same object), and no module_utils is new."""
    out = _run()
    assert out["replaced"] == [], "the loader imported these again under the same name: %s" % out["replaced"]
    assert out["new_after_loader"] == [], "the loader imported these anew: %s" % out["new_after_loader"]
    assert out["filter_path"].endswith(os.path.join("plugins", "filter", "deploy.py")), out["filter_path"]
    assert out["lookup_path"].endswith(os.path.join("plugins", "lookup", "manifest.py")), out["lookup_path"]


FREEZE_SCRIPT = r"""
import gc, json
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([%(collections)r])
from ansible.plugins.strategy.linear import StrategyModule as Builtin
from ansible_collections.ailab.gpu_lab.plugins.strategy import linear
seen = {}
def linear_run(self, iterator, play_context):   # the built-in task loop, replaced: what state does it start in?
    seen.update(frozen=gc.get_freeze_count(), filters="ansible_collections.ailab.gpu_lab.plugins.filter.deploy"
                in __import__("sys").modules)
    return 0
Builtin.run = linear_run
strategy = linear.StrategyModule.__new__(linear.StrategyModule)   # no TaskQueueManager needed for run() itself
result = strategy.run(None, None)
print(json.dumps(dict(seen, result=result)))
"""


def test_the_task_loop_starts_with_the_heap_frozen_so_forked_workers_share_it():
    """gc.freeze() before the built-in linear run: every object of the parent (play, inventory, preloaded plugins)
    is out of the collector's reach, so neither the parent's collections nor a forked worker's touch those pages."""
    script = FREEZE_SCRIPT % {"collections": os.path.join(REPO, ".collections")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["filters"], "the collection's filters were not imported before the task loop"
    assert out["frozen"] > 10000, "the heap was not frozen before the task loop: %d objects frozen" % out["frozen"]
    assert out["result"] == 0   # the built-in loop's result is returned as is
