"""``--data demo``: the templated corpus is what its generator makes, and the demo defaults
train a model that has visibly learned (most training pairs exact, unseen ones close)."""

from __future__ import annotations

import dataclasses

import pytest

from minis2s import data, decode, demo_corpus, metrics, models, train


def test_committed_corpus_is_the_generators_output():
    assert data.PHRASES_PATH.read_text(encoding="utf-8") == demo_corpus.text()
    assert data.resolve_data("demo") == data.PHRASES_PATH
    pairs = demo_corpus.pairs()
    assert len(pairs) == len(set(pairs)) == 264  # 6 subjects x (10 adjectives x 2 + 2 verbs x 6 nouns x 2)
    assert ("I am tired.", "Je suis fatigué.") in pairs
    assert ("She's not ready.", "Elle n'est pas prête.") in pairs
    assert ("He doesn't like cats.", "Il n'aime pas les chats.") in pairs
    assert ("I like apples.", "J'aime les pommes.") in pairs


@pytest.mark.slow
def test_demo_defaults_learn_the_corpus():
    """The CLI's demo defaults (about 20 s of training on 2 cores), seed 0.

    Measured on one machine (AMD EPYC, jax 0.10.2) with the defaults and seeds 0 to 7, the last
    epoch's parameters: seen exact match 0.98 to 1.00, unseen exact match 0.62 to 0.94 and chrF
    0.84 to 0.98, last val_accuracy 0.987 to 0.998. The bounds leave a margin for other CPUs,
    whose rounding moves these numbers like another seed does; the old defaults (learning rate
    5e-3, 200 epochs) gave seen exact 0.48 to 1.00 over seeds 0 to 3 and failed here."""
    ds = data.load_dataset(data.PHRASES_PATH, None)
    config = dataclasses.replace(train.Config(), **demo_corpus.TRAIN_DEFAULTS)
    params, history = train.fit(config, ds, log=None)
    split_at = train.split_train_val(len(ds), config.validation_split)
    hyps = [h.text for h in decode.decode_tokens(params, ds.encoder_tokens, ds.target_vocab, ds.max_decoder_seq_length,
                                                 model=models.build(train.model_config(config, ds)))]
    refs = [t.removeprefix(data.START).removesuffix(data.END) for t in ds.target_texts]
    seen = metrics.score(hyps[:split_at], refs[:split_at])
    unseen = metrics.score(hyps[split_at:], refs[split_at:])
    assert seen["exact_match"] > 0.9  # measured 0.98 to 1.00 (seed 0: 1.00)
    assert unseen["exact_match"] > 0.5 and unseen["chrf"] > 0.8  # measured 0.62-0.94 / 0.84-0.98 (seed 0: 0.81 / 0.93)
    # Teacher-forced accuracy counts the padding, so a model that writes fluent French with the wrong words still gets
    # 0.96 (the failing runs ended at 0.965 to 0.970); measured 0.987 to 0.998.
    assert history["val_accuracy"][-1] > 0.98
