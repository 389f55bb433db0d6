"""The sandbox fleet: containers that behave like bare servers, a private registry, a stand-in Triton.

``python -m tests.sandbox up [--hosts N] | down | status``. Stand-ins (documented as such):
the registry stands in for nvcr.io, the CPU Triton image for the NGC image, the tiny model mirror
for the Hugging Face Hub. Everything on the hosts themselves is the real deploy.
"""
