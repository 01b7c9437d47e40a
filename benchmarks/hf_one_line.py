"""The minimal transformers script squeeze's one-line start-up is compared with: classify stdin's lines.

    echo "I loved it" | python benchmarks/hf_one_line.py MODEL_DIR
"""

import sys

from transformers import pipeline

classify = pipeline("text-classification", model=sys.argv[1], device="cpu")
for line in sys.stdin:
    print(classify(line.rstrip("\n")))
