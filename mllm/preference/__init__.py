"""Preference alignment (exercise task 3). Jobs: ``reference`` (the reference model's log-probs of
every pair, once) and ``train`` (one DPO / NCA run). Their parts: ``dataset`` (pairs as samples),
``reference_cache`` (the content-keyed cache), ``logps``, ``losses`` (settings and the loss),
``trainer``; ``on_policy`` builds pairs from the starting model's own answers."""
