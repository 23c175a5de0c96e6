# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strategy ailab.gpu_lab.linear: ansible.builtin.linear, with this collection's filters and lookups loaded once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: linear
short_description: ansible.builtin.linear, with the collection's filter and lookup plugins loaded once per run
description:
  - Runs the play exactly as the C(ansible.builtin.linear) strategy does (it is a subclass that adds nothing to the
    task loop).
  - Before the first task it imports this collection's filter and lookup plugins, and with them the C(module_utils)
    they use, in ansible-playbook's own process. ansible-playbook runs every task in a worker process forked from
    that process, so each worker inherits them compiled. Without this each worker that templates one of the
    collection's filters or lookups loads them again, and ansible-core compiles a collection's Python from source
    every time (it keeps no bytecode for collection imports), about 1.5 s of CPU in a deploy re-run
    (docs/deploy.md, "Benchmark").
  - A plugin that fails to import is left for the task that uses it, which reports the error with its context.
  - Then it moves every object ansible-playbook's process holds so far (the parsed play, the inventory, the
    plugins) out of the garbage collector's reach (C(gc.freeze()), the Python documentation's advice for a process
    that forks workers). Each forked worker, and the parent's own collections, otherwise walk that whole heap, and
    walking it writes to every object's header, so each worker copies the parent's memory page by page; about
    0.8 s of a 6.3 s deploy re-run (docs/deploy.md, "Benchmark"). Garbage made later is collected as before.
  - The deploy playbook names it as its play's C(strategy); a play keyword, so it also wins over a C(strategy) set in
    the configuration.
author: ailab maintainers (@ailab)
"""

import gc
import importlib
import pkgutil

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule

PLUGINS = "ansible_collections.ailab.gpu_lab.plugins"
PRELOADED = ("filter", "lookup")   # the plugin types templating loads in a worker; actions are loaded by the strategy


def preload(kinds=PRELOADED):
    """Import every plugin of ``kinds`` of this collection under the name ansible-core's plugin loader gives it
    (it reuses a module already in sys.modules); return the names imported."""
    loaded = []
    for kind in kinds:
        package = importlib.import_module("%s.%s" % (PLUGINS, kind))
        for _finder, name, ispkg in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if ispkg:
                continue
            try:
                importlib.import_module(name)
            except Exception:  # pylint: disable=broad-except
                continue   # the task that uses the plugin loads it again and reports the error itself
            loaded.append(name)
    return loaded


class StrategyModule(LinearStrategyModule):
    """The linear strategy; the collection's filters and lookups imported before the first worker is forked."""

    def run(self, iterator, play_context):
        preload()
        gc.collect()   # what is garbage already is freed, not frozen
        gc.freeze()
        return super(StrategyModule, self).run(iterator, play_context)
