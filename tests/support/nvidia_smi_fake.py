"""A stand-in for ``nvidia-smi`` that answers only the two exact queries gpu_capacity relies on.

There is no GPU on the build machine. The script prints a case of
tests/unit/data/nvidia_smi_cases.yml (outputs written by hand in the layout NVIDIA documents,
not captured from a host). It compares the WHOLE argument list with the strings below -- field
names, their order, and ``--format=csv,noheader,nounits`` -- because the parser maps columns by
position and expects bare numbers: any other query would make a real nvidia-smi print other
columns, or a header and units, so the fake refuses it (exit 2, the arguments on stderr).
The query strings are written out here, not imported from the module, so a change of the
module's query fails the tests until this file is changed with it, on purpose.
"""

from __future__ import annotations

import pathlib
import stat

FORMAT = "--format=csv,noheader,nounits"
GPU_ARGS = ("--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,driver_version", FORMAT)
APP_ARGS = ("--query-compute-apps=gpu_uuid,pid,process_name,used_memory", FORMAT)


def write_fake_nvidia_smi(directory, case) -> str:
    """Write ``<directory>/nvidia-smi`` answering with ``case`` (a cases-file entry); return its path.

    Only cases in the ``csv,noheader,nounits`` layout are accepted: the module never asks for another.
    """
    if case.get("format") != FORMAT.split("=", 1)[1]:
        raise ValueError(f"case {case.get('id')} is in layout {case.get('format')!r}, which the module never asks "
                         f"nvidia-smi for; pick a case with format: {FORMAT.split('=', 1)[1]}")
    directory = pathlib.Path(directory)
    (directory / "smi-gpus.txt").write_text(case["gpus"])
    (directory / "smi-apps.txt").write_text(case["apps"])
    script = directory / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
if [ "$#" -eq 2 ] && [ "$1" = "{GPU_ARGS[0]}" ] && [ "$2" = "{GPU_ARGS[1]}" ]; then
  cat '{directory}/smi-gpus.txt'; exit 0
fi
if [ "$#" -eq 2 ] && [ "$1" = "{APP_ARGS[0]}" ] && [ "$2" = "{APP_ARGS[1]}" ]; then
  cat '{directory}/smi-apps.txt'; exit 0
fi
echo "fake nvidia-smi: unexpected arguments: $*" >&2
exit 2
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)
