"""Execution: everything that touches a model. One subpackage per concept, each naming what others may use:

    data/      tasks and examples: the generated task, local/hub sources, tokenization, batches
    training/  models and tokenizers, fine-tuning (cached), evaluation, the device setting
    pruning/   units and gates, masks, the recipe contract and the recipes, controls, export
    cka/       layer-by-layer CKA riding on evaluation passes
    tracking/  MLflow store and batched run logging, the run's Parquet tables, provenance, progress
    run/       one expanded run end to end: fine-tune -> prune step by step -> log
    queue/     the work queue and the search: Optuna studies shared by any number of workers

Imports point one way: registry -> runners; runners never import reports.
"""
