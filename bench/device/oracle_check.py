"""Checks AlignHub's exported cases (bench: dotnet run -- oracle-export DIR) against Hugging Face transformers and PEFT.

For each model case: the base folder loads in transformers and gives AlignHub's base logits; PEFT loads AlignHub's adapter
folder onto it (PeftModel.from_pretrained) and gives AlignHub's adapted logits; the merged folder loads in transformers as a
plain model with the same logits; merge_and_unload() agrees. For the reward model: AutoModelForSequenceClassification + the
adapter (score in modules_to_save) gives AlignHub's reward. Rotary frequencies: transformers' ROPE_INIT_FUNCTIONS. Tokenizers:
AutoTokenizer (the Rust tokenizers library) ids and apply_chat_template. Writes a JSON report; exits 1 on any mismatch.
usage: python3 oracle_check.py CASES_DIR REPORT.json
"""
import json, sys, os, traceback
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoConfig, AutoTokenizer
import peft
from peft import PeftModel

cases_dir, report_path = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(cases_dir, "cases.json")))
ids = torch.tensor([manifest["ids"]])
report = {"transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__, "checks": []}
ok = True

def record(name, value, tol, extra=None):
    global ok
    passed = value <= tol
    ok = ok and passed
    report["checks"].append({"check": name, "max_abs_diff": value, "tolerance": tol, "passed": passed, **(extra or {})})
    print(f"{'PASS' if passed else 'FAIL'} {name}: {value:.3g} (tol {tol})", flush=True)

def fail(name, e):
    global ok
    ok = False
    report["checks"].append({"check": name, "passed": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]})
    print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)

def path(p):
    return os.path.join(cases_dir, p)

for case in manifest["cases"]:
    fam = case.get("family", "llama")
    try:
        if case["kind"] == "causal_lm":
            base = AutoModelForCausalLM.from_pretrained(path(case["base"]), dtype=torch.float32).eval()
            with torch.no_grad():
                bl = base(ids).logits
            ours_base = torch.tensor(case["base_logits"], dtype=torch.float64).reshape(bl.shape)
            record(f"{fam}: base logits = transformers", (bl.double() - ours_base).abs().max().item(), 1e-4)
            model = PeftModel.from_pretrained(base, path(case["adapter"])).eval()
            with torch.no_grad():
                al = model(ids).logits
            ours = torch.tensor(case["adapted_logits"], dtype=torch.float64).reshape(al.shape)
            record(f"{fam}: adapter loaded by PEFT = AlignHub's adapted logits", (al.double() - ours).abs().max().item(), 1e-4,
                   {"adapter_keys_loaded": sum(1 for n, _ in model.named_parameters() if "lora_" in n)})
            record(f"{fam}: the adapter changes the logits", -((al.double() - ours_base).abs().max().item()), -1e-4)
            merged = AutoModelForCausalLM.from_pretrained(path(case["merged"]), dtype=torch.float32).eval()
            with torch.no_grad():
                ml = merged(ids).logits
            record(f"{fam}: AlignHub's merged folder in transformers = adapted logits", (ml.double() - ours).abs().max().item(), 1e-4)
            unloaded = model.merge_and_unload().eval()
            with torch.no_grad():
                ul = unloaded(ids).logits
            record(f"{fam}: PEFT merge_and_unload = AlignHub's adapted logits", (ul.double() - ours).abs().max().item(), 1e-4)
        elif case["kind"] == "reward_model":
            cfg = AutoConfig.from_pretrained(path(case["adapter"]))
            base = AutoModelForSequenceClassification.from_pretrained(path(case["base"]), config=cfg, dtype=torch.float32)
            model = PeftModel.from_pretrained(base, path(case["adapter"])).eval()
            with torch.no_grad():
                r = model(ids).logits.reshape(-1)[0].item()
            record("reward model: PEFT (score in modules_to_save) = AlignHub's reward", abs(r - case["reward"]), 1e-4, {"reward": r, "alignhub": case["reward"]})
    except Exception as e:
        fail(f"{case['kind']} {fam}", e)

try:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers import LlamaConfig
    for r in manifest["rope"]:
        try:
            sc = dict(r["rope_scaling"])
            kind = sc["rope_type"]
            params = dict(sc, rope_theta=r["theta"])
            cfg = LlamaConfig(hidden_size=r["head_dim"] * 4, num_attention_heads=4, head_dim=r["head_dim"],
                              max_position_embeddings=r["max_position_embeddings"], rope_theta=r["theta"], rope_scaling=sc)
            try:
                cfg.rope_parameters = params
            except Exception:
                pass
            fn = ROPE_INIT_FUNCTIONS[kind]
            out = fn(cfg, "cpu", seq_len=r["seq_len"] or None) if kind == "dynamic" else fn(cfg, "cpu")
            inv = out[0].double()
            ours = torch.tensor(r["inv_freq"], dtype=torch.float64)
            rel = ((inv - ours).abs() / ours.abs()).max().item()
            record(f"rope {r['label']}: inv_freq = transformers' ROPE_INIT_FUNCTIONS (relative)", rel, 1e-6)
        except Exception as e:
            fail(f"rope {r['label']}", e)
except Exception as e:
    fail("rope import", e)

for t in manifest.get("tokenizers", []):
    try:
        tok = AutoTokenizer.from_pretrained(path(t["folder"]))
        worst = 0
        for x in t["texts"]:
            theirs = tok(x["text"])["input_ids"]
            same = theirs == x["ids"]
            worst = max(worst, 0 if same else 1)
            if not same:
                report["checks"].append({"check": f"{t['folder']} ids of {x['text']!r}", "passed": False, "transformers": theirs, "alignhub": x["ids"]})
        record(f"{t['folder']}: tokenizer(text) ids = AlignHub's prompt ids ({len(t['texts'])} texts)", worst, 0)
        if t.get("chat"):
            c = t["chat"]
            text = tok.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=True)
            ids2 = tok.apply_chat_template(c["messages"], tokenize=True, add_generation_prompt=True)
            if isinstance(ids2, dict) or hasattr(ids2, "keys"):
                ids2 = ids2["input_ids"]
            record(f"{t['folder']}: apply_chat_template text = AlignHub's", 0 if text == c["text"] else 1, 0)
            record(f"{t['folder']}: apply_chat_template(tokenize=True) ids = AlignHub's", 0 if list(ids2) == c["ids"] else 1, 0,
                   {} if list(ids2) == c["ids"] else {"transformers": list(ids2), "alignhub": c["ids"]})
    except Exception as e:
        fail(f"tokenizer {t['folder']}", e)

report["all_passed"] = ok
json.dump(report, open(report_path, "w"), indent=2)
print("ALL PASSED" if ok else "SOME FAILED")
sys.exit(0 if ok else 1)
