"""Who may talk to the scheduler: CURVE key files (``key_files``), the allow-list of client keys
(``allow_list``), the scheduler's ZAP authenticator and socket options (``curve``), the per-message
peer check (``peer_guard``), the rule that a public bind needs keys (``bind_policy``) and the
``lama-cleaner keys`` command (``keys_command``). ``docs/security.md`` explains the whole.
"""
