# The general preference model's score, loss and their gradients, computed independently of AlignHub (Debian's
# python3-torch, float64): Zhang et al. (2024), s(a, b) = v_a^T R v_b with R block-diagonal of [[0, 1], [-1, 0]].
# stdin: {"chosen": [[...2k], ...], "rejected": [[...], ...]}; stdout: {"score": [...], "loss": mean loss,
# "grad_chosen": [[...]], "grad_rejected": [[...]], "matrix": P(i > j) over the chosen rows}
import json, sys
import torch

torch.set_default_dtype(torch.float64)
req = json.load(sys.stdin)
a = torch.tensor(req["chosen"], requires_grad=True)
b = torch.tensor(req["rejected"], requires_grad=True)
k = a.shape[1] // 2
R = torch.zeros(2 * k, 2 * k)
for j in range(k):
    R[2 * j, 2 * j + 1] = 1.0
    R[2 * j + 1, 2 * j] = -1.0
score = torch.einsum("bi,ij,bj->b", a, R, b)
loss = -torch.nn.functional.logsigmoid(score).mean()
loss.backward()
with torch.no_grad():
    matrix = torch.sigmoid(a @ R @ a.T)
json.dump({"score": score.tolist(), "loss": loss.item(), "grad_chosen": a.grad.tolist(), "grad_rejected": b.grad.tolist(), "matrix": matrix.tolist()}, sys.stdout)
