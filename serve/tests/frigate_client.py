"""A Frigate-style client of `edgetpu serve`, on pyzmq (the ZeroMQ binding Frigate uses).

Usage: frigate_client.py ENDPOINT FRAME_FILE UPLOAD_MODEL OUT_JSON

Speaks Frigate's zmq detector protocol as frigate/detectors/plugins/zmq_ipc.py does (a REQ
socket, a JSON header frame then the raw tensor) and writes what the server answered to
OUT_JSON for the Rust test to check.
"""

import json
import struct
import sys
import threading

import zmq

endpoint, frame_path, upload_path, out_path = sys.argv[1:5]
ctx = zmq.Context()


def sock(timeout_ms=5000):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def request(name):
    return json.dumps({"model_request": True, "model_name": name}).encode()


frame = open(frame_path, "rb").read()
header = json.dumps({"shape": [1, 256, 256, 3], "dtype": "uint8", "model_type": "ssd"}).encode()
results = {}

s = sock()
s.send(request("traffic_model.tflite"))
results["handshake"] = s.recv().decode()
s.send_multipart([header, frame])
reply = s.recv_multipart()
results["detection_frames"] = len(reply)
results["detection"] = list(struct.unpack("<120f", reply[0])) if len(reply[0]) == 480 else reply[0].decode()

other = sock()
other.send(request("no_such_model.tflite"))
results["missing"] = other.recv().decode()
other.send_multipart([json.dumps({"model_data": True, "model_name": "uploaded.tflite"}).encode(),
                      open(upload_path, "rb").read()])
results["upload"] = other.recv().decode()
other.send_multipart([json.dumps({"model_data": True, "model_name": "../escaped.tflite"}).encode(), b"x"])
results["escape"] = other.recv().decode()
other.send(b"\xff\xfe not json")
results["malformed"] = other.recv().decode()
fresh = sock()
fresh.send_multipart([json.dumps({"shape": [1, 10, 10, 3], "dtype": "uint8"}).encode(), b"\0" * 300])
results["no_model_inference"] = fresh.recv().decode()
other.send_multipart([header, frame])
results["not_ssd"] = other.recv().decode()
s.send_multipart([json.dumps({"shape": [1, 10, 10, 3], "dtype": "uint8"}).encode(), b"\0" * 300])
results["wrong_shape"] = s.recv().decode()
s.send_multipart([json.dumps({"shape": [1, 256, 256, 3], "dtype": "float64"}).encode(), frame])
results["wrong_dtype"] = s.recv().decode()

# Several detectors at once, each with its own socket and model.
same = [None] * 4


def client(k):
    c = sock()
    c.send(request("traffic_model.tflite"))
    c.recv()
    replies = []
    for _ in range(3):
        c.send_multipart([header, frame])
        replies.append(c.recv_multipart()[0])
    same[k] = all(r == reply[0] for r in replies)
    c.close()


threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
results["clients_agree"] = same

# A request that times out on the client (Frigate gives up after 200 ms; 1 ms here, shorter than
# any inference), then what Frigate does: a new socket, the handshake again, the next request.
t = sock(timeout_ms=1)
t.send(request("traffic_model.tflite"))
try:
    t.recv()
    t.send_multipart([header, frame])
    t.recv()
    results["timed_out"] = False
except zmq.Again:
    results["timed_out"] = True
t.close(linger=0)
n = sock()
n.send(request("traffic_model.tflite"))
n.recv()
n.send_multipart([header, frame])
results["after_timeout_same"] = n.recv_multipart()[0] == reply[0]

json.dump(results, open(out_path, "w"))
