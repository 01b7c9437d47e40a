"""The built-in text sample int8 calibration runs on when a model is pulled.

Real activations, not random ones, decide which projections survive int8: a transformer's hidden states
carry a few outlier channels and delimiter tokens that only show up on real text. The sample is
deliberately mixed -- short and long, questions and statements, reviews, news, science, instructions,
dialogue, numbers, names, a little non-English -- so that the activation ranges it produces are
representative of what squeeze sees in use. It is kept apart from the test sentences (tests/sentences.py)
and the benchmark's (benchmarks/fidelity_sentences.py), so that fidelity is never judged on the text it
was tuned on.
"""

CALIBRATION_TEXTS: tuple[str, ...] = (
    # Short, everyday.
    "Good morning!",
    "Where did I leave my glasses?",
    "It's raining again.",
    "Thanks, that helped a lot.",
    "No.",
    "See you at eight.",
    "The kettle is boiling.",
    "Turn left at the bakery.",
    # Reviews and opinions, both polarities.
    "The battery life on this tablet is fantastic; I charge it twice a week at most.",
    "Terrible customer support: three emails, no reply, and my order is still missing.",
    "The hotel room was spotless, the staff friendly, and breakfast was better than expected.",
    "I wanted to like this novel, but the plot drags and the ending feels rushed.",
    "Five stars. Arrived early, works perfectly, and the price was fair.",
    "The film looks gorgeous, yet two and a half hours of it left me bored and restless.",
    "Meh. It does the job, nothing more.",
    "Absolutely disgusting food, cold fries and a burger that tasted of cardboard.",
    "The headphones are comfortable for hours and the noise cancelling is superb on trains.",
    "Would not recommend: the zipper broke on the second day.",
    # News and politics.
    "The prime minister announced a snap election after losing a key parliamentary vote on Wednesday.",
    "Flooding in the river valley forced hundreds of families to leave their homes overnight.",
    "Shares of the chipmaker jumped nine percent after it raised its full-year forecast.",
    "Negotiators from both countries agreed to resume talks on the disputed border next month.",
    "The city will close the old bridge for repairs from March until the end of the summer.",
    "A spokesperson declined to comment on reports that the merger had been called off.",
    "Unemployment fell to 3.8% in October, the lowest level in more than a decade.",
    "Wildfires continue to spread across the region, fuelled by strong winds and record heat.",
    # Science, medicine, technology.
    "Mitochondria produce most of the chemical energy needed to power a cell's biochemical reactions.",
    "The telescope captured infrared images of a galaxy that formed shortly after the Big Bang.",
    "Researchers found that the vaccine reduced hospital admissions by roughly two thirds.",
    "A hash table offers average constant-time lookups by mapping keys to buckets.",
    "Plate tectonics explains why earthquakes cluster along the edges of the continents.",
    "The drug should be taken with food, twice daily, for no longer than fourteen days.",
    "Gradient descent updates each parameter in the direction that most reduces the loss.",
    "Antibiotics do not work against viral infections such as the common cold.",
    "The compiler rejected the program because a variable was used before it was declared.",
    "Sea levels have risen about twenty centimetres since the start of the twentieth century.",
    # Instructions and how-to.
    "Preheat the oven to 200 degrees, then roast the vegetables for about forty minutes.",
    "To reset your password, click the link we sent and choose a new one within 24 hours.",
    "Unplug the printer, wait thirty seconds, and plug it back in before trying again.",
    "Water the seedlings every morning and keep them out of direct afternoon sun.",
    "Fold the paper in half lengthwise, then bring the top corners down to the centre line.",
    "Before submitting the form, make sure every required field is filled in.",
    # Questions.
    "How long does it take to fly from Madrid to Buenos Aires?",
    "What is the difference between weather and climate?",
    "Who wrote the opera The Magic Flute?",
    "Is it safe to eat raw cookie dough?",
    "Which planet has the most moons?",
    "Can I bring my bicycle on the regional train?",
    "Why do onions make people cry?",
    "When does the library open on public holidays?",
    # Dialogue and informal.
    "\"Are you coming to the party?\" she asked. \"Only if you promise we'll leave by midnight.\"",
    "honestly idk what happened, one minute it worked and then poof, gone",
    "OMG the concert last night was AMAZING!!!",
    "Sorry I'm late, the bus broke down halfway here.",
    "ok so basically the meeting got moved to friday, can u let the others know?",
    "Hey, quick question: does anyone have a spare charger?",
    # Sports, culture, history.
    "The home side equalised in stoppage time and went on to win the penalty shoot-out.",
    "The marathon runner set a course record despite the strong headwind in the final stretch.",
    "Beethoven continued to compose after he had lost almost all of his hearing.",
    "The Roman Empire split into eastern and western halves in the late fourth century.",
    "Her debut album mixes folk melodies with electronic beats and sold out within a week.",
    "The museum's new wing houses a collection of Japanese woodblock prints.",
    "The chess champion resigned after a blunder in a winning position.",
    # Business, law, finance.
    "The contract may be terminated by either party with thirty days' written notice.",
    "Quarterly operating costs rose faster than revenue, squeezing the company's margins.",
    "Invoice #48213 is overdue; please settle the outstanding balance of $1,250.00.",
    "The court ruled that the landlord had failed to carry out necessary repairs.",
    "Our startup is hiring two backend engineers and a product designer in Lisbon.",
    "Interest on the savings account is paid monthly at a variable rate.",
    # Nature, travel, food.
    "A thick fog rolled in from the sea and swallowed the lighthouse.",
    "The hiking trail climbs steeply through pine forest before opening onto alpine meadows.",
    "Fresh basil, ripe tomatoes and a drizzle of olive oil are all this salad needs.",
    "Our ferry to the island was cancelled because of the storm.",
    "Penguins huddle together to survive the Antarctic winter.",
    "The night market sells grilled squid, mango sticky rice and sugarcane juice.",
    # Numbers, names, codes, lists.
    "Flight LH 1234 departs from gate B17 at 06:35.",
    "Call 555-0199 between 9 a.m. and 5 p.m., Monday to Friday.",
    "Dr. Amara Okafor and Prof. Lin Wei co-authored the 2021 study.",
    "Ingredients: eggs, milk, flour, sugar, butter, vanilla.",
    "Version 3.2.1 fixes a memory leak in the image decoder.",
    "SELECT name FROM users WHERE age > 30 ORDER BY name;",
    "https://example.org/docs/getting-started",
    "Q3 2024: revenue 12.4M, EBITDA 2.1M, headcount 87.",
    # A little non-English and mixed script.
    "La réunion est reportée à demain matin.",
    "Der Zug nach München hat zwanzig Minuten Verspätung.",
    "¿Dónde está la estación de autobuses?",
    "Москва — столица России.",
    "我们明天去公园散步。",
    "She ordered a croissant and a café crème at the little bistro near the Seine.",
    # Longer passages.
    "When the factory closed, the town lost more than its largest employer: the bakery, the hardware "
    "store and the cinema all shut within two years, and the young people who could leave did so, "
    "until the school had to merge with one in the next valley.",
    "The study followed 4,000 adults for ten years and found that those who walked at least seven thousand "
    "steps a day had a markedly lower risk of heart disease, even after adjusting for age, smoking and income.",
    "I ordered the laptop for its light weight and long battery life, and on both counts it delivers, but "
    "the keyboard flexes when you type, the speakers are tinny, and the fan whines under even modest load.",
    "Customer: My package says delivered but it isn't here. Agent: I'm sorry to hear that. Could you check "
    "with your neighbours and look around the building entrance? If it doesn't turn up, we'll send a replacement.",
    "In the early morning light the harbour was quiet except for the gulls, the slap of water against the "
    "hulls, and an old fisherman mending his nets on the pier as he had done every day for forty years.",
    "The committee reviewed the proposal in detail, raised concerns about the projected costs and the "
    "timeline, and asked the applicants to submit a revised budget together with letters of support.",
    "Neural networks learn representations of their input by adjusting millions of weights; the deeper "
    "layers tend to capture increasingly abstract features, from edges and textures to objects and scenes.",
    "After weeks of negotiations the union accepted a pay rise of four percent, an extra day of annual leave "
    "and a promise that no jobs would be cut before the end of next year.",
)
