"""Built-in parity pairs: a few queries, each with a dozen short documents of mixed relevance.

Used when `es-rerank export` gets no `--parity-data`. Written for this project; they mix
topics, lengths and scripts (accents, CJK, Cyrillic) so the parity check sees more than ASCII.

Example:
    >>> len(BUILTIN_QUERIES), min(len(docs) for _, docs in BUILTIN_QUERIES)
    (6, 12)
"""

from __future__ import annotations

_SHARED_NOISE = (
    "The museum reopened after a two-year renovation of its east wing.",
    "Tickets for the regional rail network will cost slightly more from January.",
    "A recipe for a quick tomato soup needs onions, garlic and a little cream.",
    "東京の天気は明日晴れる予報です。",
)

BUILTIN_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("does vitamin D supplementation reduce fracture risk in older adults", (
        "In a randomised trial of 2,000 adults over 70, daily vitamin D did not lower the rate of hip fractures "
        "compared with placebo over three years.",
        "Vitamin D combined with calcium reduced non-vertebral fractures in institutionalised elderly women.",
        "Bone mineral density rose modestly with cholecalciferol, but falls were unchanged.",
        "Serum 25-hydroxyvitamin D levels vary with season and latitude.",
        "Fracture risk in older adults depends on bone density, falls and frailty.",
        "Supplementation trials differ in dose, interval and baseline vitamin status.",
        "Calcium intake from dairy was not associated with fewer fractures in this cohort.",
        "Die Studie untersuchte Vitamin-D-Gaben bei älteren Menschen über fünf Jahre.",
        *_SHARED_NOISE,
    )),
    ("how do CRISPR base editors change a single nucleotide", (
        "Base editors fuse a catalytically impaired Cas9 to a deaminase, converting C to T or A to G without a "
        "double-strand break.",
        "Prime editing uses a reverse transcriptase and a guide RNA carrying the new sequence.",
        "Off-target deamination of RNA has been reported for some cytosine base editors.",
        "Double-strand breaks repaired by non-homologous end joining create small insertions and deletions.",
        "The protospacer adjacent motif limits which sites Cas9 can reach.",
        "Единичные замены нуклеотидов можно вносить без разрыва двойной цепи ДНК.",
        "Delivery of editors to the liver uses lipid nanoparticles.",
        "A point mutation in the beta-globin gene causes sickle cell disease.",
        *_SHARED_NOISE,
    )),
    ("café opening hours on Sunday", (
        "Le café est ouvert le dimanche de 9 h à 18 h.",
        "Our café opens at 8am on weekdays and 10am on Sundays; closed on public holidays.",
        "Sunday brunch is served until 2pm in the garden room.",
        "The bakery next door sells croissants from 7am.",
        "Opening hours may change during the summer season.",
        "Parking is free on Sundays in the municipal garage.",
        "Coffee beans are roasted on site every Tuesday.",
        "",
        *_SHARED_NOISE,
    )),
    ("symptoms of iron deficiency anaemia", (
        "Fatigue, pale skin, shortness of breath on exertion and brittle nails are common signs of iron "
        "deficiency anaemia.",
        "Low ferritin is the most specific laboratory marker of depleted iron stores.",
        "Heavy menstrual bleeding is a frequent cause of iron loss in younger women.",
        "Restless legs syndrome has been linked to low brain iron.",
        "Vitamin B12 deficiency causes a macrocytic anaemia with neurological signs.",
        "Oral iron is often poorly tolerated because of gastrointestinal side effects.",
        "Hepcidin regulates iron absorption in the gut.",
        "貧血の症状には疲労感や息切れがあります。",
        *_SHARED_NOISE,
    )),
    ("transformer attention complexity with sequence length", (
        "Self-attention compares every token with every other token, so its cost grows quadratically with "
        "sequence length.",
        "Sparse and linear attention variants reduce the quadratic cost for long documents.",
        "FlashAttention computes exact attention in tiles that fit in on-chip memory.",
        "Positional embeddings tell the model where each token sits in the sequence.",
        "Cross-encoders read the query and the document together in one sequence.",
        "Batching sequences of similar length reduces wasted padding.",
        "The feed-forward block dominates compute for short sequences.",
        "Transformers were first proposed for machine translation. " * 12,
        *_SHARED_NOISE,
    )),
    ("effect of sleep deprivation on memory consolidation", (
        "One night without sleep impaired the consolidation of word pairs learned the evening before.",
        "Slow-wave sleep replays hippocampal activity patterns recorded during learning.",
        "Caffeine masked subjective sleepiness but not the memory deficit.",
        "REM sleep has been linked to emotional memory processing.",
        "Shift workers report more errors at the end of night shifts.",
        "Naps of 20 minutes improved alertness in the afternoon.",
        "Le manque de sommeil réduit la consolidation de la mémoire à long terme.",
        "Memory 🧠 and sleep 😴: a short popular-science overview.",
        *_SHARED_NOISE,
    )),
)
