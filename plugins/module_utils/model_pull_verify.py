# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Model signature verification for ``ailab.gpu_lab.model_pull`` with the ``model-signing`` library.

Key-based (an elliptic-curve public key) and certificate-based (a certificate chain) signatures,
as produced by ``model_signing sign key|certificate`` or its Python API, over the default
``files`` serialization. The directory is hashed through symlinks (a Hugging Face snapshot is
a tree of symlinks into ``blobs/``); the signature file itself is ignored.
"""
from __future__ import annotations

import os
import re
import traceback

MS_IMPORT_ERROR = None
try:
    from model_signing import hashing as ms_hashing
    from model_signing import verifying as ms_verifying
except ImportError:  # pragma: no cover
    ms_hashing = ms_verifying = None
    MS_IMPORT_ERROR = traceback.format_exc()


class VerifyError(Exception):
    pass


def signature_path(model_path, signature):
    return signature if os.path.isabs(signature) else os.path.join(model_path, signature)


def verify(model_path, signature="model.sig", method="key", public_key=None, certificate_chain=None,
           hash_algorithm="sha256"):
    """Verify the files under ``model_path`` against ``signature``; raise VerifyError on any mismatch."""
    if ms_verifying is None:
        raise VerifyError("model-signing is not installed on the target (pip install model-signing)")
    sig = signature_path(model_path, signature)
    if not os.path.isfile(sig):
        raise VerifyError("signature file %s not found: publish it with the model (e.g. model.sig in the repo) or "
                          "give verify.signature as an absolute path on the target" % sig)
    config = ms_verifying.Config()
    if method == "key":
        if not public_key or not os.path.isfile(public_key):
            raise VerifyError("verify.public_key %r is not a readable file on the target" % (public_key,))
        config.use_elliptic_key_verifier(public_key=public_key)
    elif method == "certificate":
        chain = list(certificate_chain or [])
        for c in chain:
            if not os.path.isfile(c):
                raise VerifyError("verify.certificate_chain entry %r is not a readable file on the target" % c)
        config.use_certificate_verifier(certificate_chain=chain)
    else:
        raise VerifyError("verify.method must be 'key' or 'certificate', got %r" % (method,))
    hashing_config = ms_hashing.Config().use_file_serialization(hashing_algorithm=hash_algorithm)
    rel = os.path.relpath(os.path.abspath(sig), os.path.abspath(model_path))
    if not rel.startswith(".."):
        hashing_config.set_ignored_paths(paths=[rel], ignore_git_paths=True)
    config.set_hashing_config(hashing_config.set_allow_symlinks(True))
    try:
        config.verify(model_path, sig)
    except Exception as exc:  # ValueError on mismatch; crypto errors on a wrong key / broken bundle
        text = _summarize(str(exc) or type(exc).__name__)
        raise VerifyError("signature verification of %s with %s FAILED: %s. The files do not match what was signed "
                          "(or the key/certificate is not the signer's): do not serve this model" % (model_path, sig, text))
    return {"verified": True, "signature": sig, "method": method}


def _summarize(text):
    """Turn model-signing's manifest diff (with raw digest bytes) into file names a user can act on."""
    if "Signature mismatch" not in text:
        return text
    parts = []
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", text)
    if changed:
        parts.append("content differs for %s" % ", ".join(changed))
    for kind in ("Extra files found", "Missing files"):
        m = re.search(r"%s in model \\?'[^'\\]*\\?': ([^'\"\]]+)" % kind, text)
        if m:
            parts.append("%s: %s" % (kind.lower(), m.group(1).strip().rstrip(",")))
    return "; ".join(parts) or text
