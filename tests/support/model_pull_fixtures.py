"""Fixtures and helpers of the model_pull tests (import them into the test module).

Real components: the module code, AnsibleModule (argument spec, check mode, no_log), huggingface_hub
2.4.0, model-signing. Emulated: the Ollama server (tests/support/ollama_server.py) and the
Hugging Face Hub (tests/support/hf_server.py), both speaking their HTTP APIs on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import subprocess
import sys

import pytest

from tests.support.hf_server import HFServer, tiny_model_files
from tests.support.ollama_server import OllamaServer

VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture
def ollama():
    """A started local Ollama API server with two small models in its registry, none pulled."""
    srv = OllamaServer(registry={"tiny:1b": 600 * 1024, "nomic-embed-text": 128 * 1024}, chunk=64 * 1024)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def hf_hub():
    """A started local Hugging Face hub serving ailab-test/tiny-model (two commits), token 'hf_good'."""
    srv = HFServer(token="hf_good_" + "x" * 20)
    srv.start()
    yield srv
    srv.stop()


def call_module(args, check=False, diff=False):
    """Run plugins/modules/model_pull.py in-process through AnsibleModule; return its JSON result.

    Ansible's own ``patch_module_args`` feeds the arguments, so the argument spec, defaults,
    check mode and no_log filtering are those a playbook run gets.
    """
    from ansible.module_utils.common import warnings as module_warnings
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.ailab.gpu_lab.plugins.modules import model_pull

    # a real module runs in a fresh process: start from empty warning/deprecation registries
    module_warnings._global_warnings.clear()  # pylint: disable=protected-access
    module_warnings._global_deprecations.clear()  # pylint: disable=protected-access
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(full), contextlib.redirect_stdout(out):
        try:
            model_pull.main()
        except SystemExit:
            pass
    text = out.getvalue()
    return json.loads(text[text.index("{"):])


def gen_ec_key(directory):
    """A fresh P-256 key pair (PEM) -> (private_path, public_path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = os.path.join(directory, "signing.key"), os.path.join(directory, "signing.pub")
    with open(priv, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    with open(pub, "wb") as fh:
        fh.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def gen_ca_and_leaf(directory):
    """A CA certificate and a code-signing leaf certificate it issued -> (leaf_key, leaf_cert, ca_cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ailab test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ailab model signer")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {n: os.path.join(directory, n) for n in ("leaf.key", "leaf.pem", "ca.pem")}
    with open(paths["leaf.key"], "wb") as fh:
        fh.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    with open(paths["leaf.pem"], "wb") as fh:
        fh.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths["ca.pem"], "wb") as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))
    return paths["leaf.key"], paths["leaf.pem"], paths["ca.pem"]


def write_files(directory, files):
    for rel, data in files.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def read_files(directory):
    out = {}
    for root, _dirs, names in os.walk(directory):
        for n in names:
            full = os.path.join(root, n)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, directory).replace(os.sep, "/")] = fh.read()
    return out


def sign_with_cli(model_dir, private_key):
    """Sign ``model_dir`` with the real ``model_signing`` CLI (key method); signature model.sig inside it."""
    sig = os.path.join(model_dir, "model.sig")
    proc = subprocess.run([os.path.join(VENV_BIN, "model_signing"), "sign", "key", "--private_key", private_key,
                           "--signature", sig, model_dir], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sig


def signed_tiny_repo(tmp_path, method="key"):
    """Generate the tiny model, sign it for real (CLI for key, API for certificate) -> (files, verify_args)."""
    model_dir = tmp_path / "to-sign"
    model_dir.mkdir()
    write_files(str(model_dir), tiny_model_files(0))
    if method == "key":
        priv, pub = gen_ec_key(str(tmp_path))
        sign_with_cli(str(model_dir), priv)
        verify = {"method": "key", "public_key": pub}
    else:
        from model_signing import signing

        leaf_key, leaf_cert, ca = gen_ca_and_leaf(str(tmp_path))
        (signing.Config().use_certificate_signer(private_key=leaf_key, signing_certificate=leaf_cert,
                                                 certificate_chain=[ca])
         .sign(str(model_dir), str(model_dir / "model.sig")))
        verify = {"method": "certificate", "certificate_chain": [ca]}
    return read_files(str(model_dir)), verify
