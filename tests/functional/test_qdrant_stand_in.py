"""The Qdrant stand-in answers qdrant-client's REST calls as Qdrant does, and fails where Qdrant fails.

REAL: qdrant-client 1.18.0's remote client (the one Open WebUI uses, from .venv-open-webui) making the calls Open
WebUI's multitenant store makes; the stand-in's storage and search are qdrant-client's local mode.
EMULATED: Qdrant's HTTP server (tests/support/qdrant_server.py): routes, envelope, auth, status codes.
"""

import json
import subprocess

from tests.support.qdrant_server import REPO, QdrantServer, qdrant_python
from tests.support.serve import json_request

# run by the Python that has qdrant-client; prints what the client got back
CLIENT = r"""
import json, sys, warnings
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
warnings.simplefilter("ignore")
url, key = sys.argv[1:3]
c = QdrantClient(url=url, api_key=key, timeout=10)
out = {"exists_before": c.collection_exists("mt")}
c.create_collection("mt", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE),
                    hnsw_config=models.HnswConfigDiff(payload_m=16, m=0))
c.create_payload_index("mt", field_name="tenant_id",
                       field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True))
c.upload_points("mt", [
    models.PointStruct(id="00000000-0000-0000-0000-00000000000a", vector=[1, 0, 0], payload={"tenant_id": "a", "text": "x"}),
    models.PointStruct(id="00000000-0000-0000-0000-00000000000b", vector=[0.9, 0.1, 0], payload={"tenant_id": "b", "text": "y"}),
    models.PointStruct(id="00000000-0000-0000-0000-00000000000c", vector=[0, 0, 1], payload={"tenant_id": "a", "text": "z"}),
], wait=True)
tenant = models.Filter(must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value="a"))])
out["count_a"] = c.count("mt", count_filter=tenant).count
hits = c.query_points("mt", query=[1, 0, 0], limit=5, query_filter=tenant).points
out["query_a"] = [(h.payload["text"], round(h.score, 3)) for h in hits]
page, offset = c.scroll("mt", limit=2)
out["scroll"] = [len(page), offset is not None]
c.delete("mt", points_selector=models.FilterSelector(filter=tenant))
out["count_after_delete"] = c.count("mt").count
for name, call in (("create_again", lambda: c.create_collection("mt", vectors_config=models.VectorParams(
                        size=3, distance=models.Distance.COSINE))),
                   ("missing", lambda: c.get_collection("nope")),
                   ("snapshot", lambda: c.create_snapshot("mt")),
                   ("wrong_key", lambda: QdrantClient(url=url, api_key="wrong", timeout=10).get_collections())):
    try:
        call()
        out[name] = None
    except UnexpectedResponse as err:
        out[name] = [err.status_code, json.loads(err.content)["status"]["error"]]
out["collections"] = [x.name for x in c.get_collections().collections]
print(json.dumps(out))
"""


def test_qdrant_client_gets_qdrants_answers_from_the_stand_in():
    with QdrantServer(api_key="stand-in-key", collections={"notes": {"size": 4, "distance": "Cosine"}}) as qdrant:
        proc = subprocess.run([qdrant_python(), "-c", CLIENT, qdrant.url, "stand-in-key"], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        # a body Qdrant's schema refuses, and a route Qdrant has not: errors in Qdrant's shape, nothing stored
        bad = json_request("PUT", qdrant.url + "/collections/mt/points", {"points": [{"id": 1, "vectr": [1]}]},
                           headers={"api-key": "stand-in-key"})
        unknown = json_request("POST", qdrant.url + "/collections/mt/points/recommend", {},
                               headers={"api-key": "stand-in-key"})
        requests = qdrant.requests
    assert got["exists_before"] is False
    assert got["count_a"] == 2
    assert got["query_a"] == [["x", 1.0], ["z", 0.0]]      # tenant a only, by cosine; b's nearer point filtered out
    assert got["scroll"] == [2, True]
    assert got["count_after_delete"] == 1
    assert got["create_again"] == [409, "Wrong input: Collection `mt` already exists!"]
    assert got["missing"] == [404, "Not found: Collection `nope` doesn't exist!"]
    assert got["snapshot"][0] == 404 and got["wrong_key"][0] == 401
    assert sorted(got["collections"]) == ["mt", "notes"]
    assert bad[0] == 400 and "error" in bad[1]["status"], bad
    assert unknown[0] == 404 and unknown[1]["status"]["error"], unknown
    assert ("PUT", "/collections/mt/points") in requests and ("POST", "/collections/mt/points/query") in requests
