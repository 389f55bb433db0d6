"""Test support code: harnesses, stand-ins, clients and checks the tests share (no tests here)."""
