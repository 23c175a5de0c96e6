# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests only: Ansible's own ``local`` connection under another transport name.

``ansible.builtin.reboot`` refuses to run over ``local`` (it would reboot the controller). The
provision tests run the role against a stand-in host in a directory
(tests/support/provision_fake_host.py, whose ``shutdown`` only "boots" the current system), so
they use this plugin to let the reboot action's real code run: find ``shutdown`` in the
search paths, run it, wait until the boot check reports another boot, run its test command.
Nothing else differs from ``local``. Enabled with ANSIBLE_CONNECTION_PLUGINS=<this directory>.
"""

from __future__ import annotations

from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = """
    name: stand_in_host
    short_description: the local connection under another name, for the provision tests
    description:
        - Runs tasks on the controller exactly as the C(local) connection does; only its transport name differs,
          so that C(ansible.builtin.reboot) runs against a stand-in host directory.
    author: ailab.gpu_lab contributors
    options:
        become_success_timeout:
            type: int
            default: 10
            description: As for the local connection.
            vars:
                - name: ansible_local_become_success_timeout
        become_strip_preamble:
            type: bool
            default: true
            description: As for the local connection.
            vars:
                - name: ansible_local_become_strip_preamble
    extends_documentation_fragment:
        - connection_pipelining
"""


class Connection(LocalConnection):
    transport = "stand_in_host"
