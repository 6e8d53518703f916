"""llama-cpp-python's OpenAI-compatible server, loading models as the embedded engine does.

``python -m llmopt.llm.embedded_server --model FILE.gguf --host 127.0.0.1 --port 8080 ...`` takes the
options of ``python -m llama_cpp.server``; the differences are the embedded engine's (see
:mod:`llmopt.llm.embedded`): models load without llama.cpp's extra buffer types (AMX kernels, weight
repacking), whose AMX path segfaults on the first request on some Intel Xeon CPUs, and every
request evaluates its prompt the same way, so a request's seed fixes its sample whatever was
asked before it (llama.cpp's prompt cache otherwise makes it depend on the previous request).
The tests' and benchmarks' loopback server is started this way.
"""

from __future__ import annotations

import llama_cpp
from llama_cpp import llama_cpp as lib
from llama_cpp.server.__main__ import main

from llmopt.llm.embedded import _llama_class, without_extra_bufts

if __name__ == "__main__":
    lib.llama_model_default_params = without_extra_bufts(lib.llama_model_default_params)
    llama_cpp.Llama = _llama_class()  # the server makes its models as llama_cpp.Llama(...)
    main()
