"""``medseg serve``: an exported model behind KServe's open inference protocol (v2).

- ``tensors``: the request (inputs ``image``, prompts) decoded and checked, one clear line per problem;
- ``inference``: the loaded model and a request segmented with ``medseg predict``'s replay and engine;
- ``predictor``: the KServe ``Model`` (loaded once, bad requests answered 400);
- ``server``: KServe's model server on one host and port.
"""
