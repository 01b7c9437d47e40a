"""Varied English sentences for tests that need real text (real-weight parity, int8 fidelity)."""

import random

HANDWRITTEN = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "I absolutely loved this movie, the acting was superb!",
    "This was the worst purchase I have ever made.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Quantum computers use qubits, which can be in superposition.",
    "She moved to Berlin in 2019 to work for a small startup.",
    "Please restart the router and try connecting again.",
    "The committee will meet next Thursday to discuss the budget.",
    "Why is the sky blue?",
    "Paris is the capital of France.",
    "My flight was delayed by six hours and nobody told us why.",
    "Photosynthesis converts light energy into chemical energy.",
    "The new phone has a brilliant screen but the battery barely lasts a day.",
    "He scored twice in the second half to win the match.",
    "Café au lait, naïve résumé, and jalapeño are borrowed words.",
    "東京は日本の首都です。",
    "I can't believe it's already November!",
    "Error 404: the page you requested could not be found.",
    "def main(): return 0",
    "The patient was prescribed 20 mg of atorvastatin daily.",
    "Rain is expected throughout the weekend, with temperatures around 12 degrees.",
    "Our quarterly revenue grew 14% year over year.",
    "The museum reopened after a two-year renovation.",
    "Honestly, the service was okay, nothing special.",
    "Elephants are the largest land animals on Earth.",
    "To be, or not to be, that is the question.",
    "The train leaves at 7:45 from platform nine.",
    "He apologised for the confusion and offered a full refund.",
    "Machine learning models can inherit biases from their training data.",
    "The soup was cold and the bread was stale.",
    "Volunteers planted over three thousand trees along the river.",
    "Can you recommend a good book about Roman history?",
    "The software update fixed the crash but introduced a new bug.",
    "lol that was hilarious 😂😂",
    "A minimalist apartment with white walls and wooden floors.",
    "The senator denied all allegations of wrongdoing.",
    "Mix the paint thoroughly before applying the first coat.",
    "The northern lights were visible across Scotland last night.",
]

_SUBJECTS = ["The engineer", "My neighbour", "A small company", "The orchestra", "Our team", "The old library",
             "A young student", "The government", "The hotel staff", "This laptop", "The city council", "The dog"]
_VERBS = ["announced", "rejected", "celebrated", "repaired", "ignored", "designed", "criticised", "delivered",
          "discovered", "postponed", "praised", "lost"]
_OBJECTS = ["a new bridge across the bay", "the proposal without reading it", "the annual festival in June",
            "an ancient clock", "every complaint from customers", "a faster way to sort the mail",
            "the final report", "a rare species of frog", "the concert until spring", "the brilliant performance",
            "the keys to the warehouse", "a cheaper battery"]
_TAILS = ["", " yesterday", " after a long debate", ", which surprised everyone", " for the third time this year",
          " despite the heavy rain", " and nobody was happy about it", " to great applause"]


def varied(n: int, seed: int = 0) -> list[str]:
    """The handwritten sentences, then generated ones of mixed length and topic, n in all."""
    rng = random.Random(seed)
    out = list(HANDWRITTEN[:n])
    while len(out) < n:
        parts = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}."
                 for _ in range(rng.choice([1, 1, 2, 3]))]
        out.append(" ".join(parts))
    return out
