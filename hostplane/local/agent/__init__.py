"""The local runtime agent: the local stand-in for ECS, one reloader per tenant runtime
registered in the runtime registry (services.resources.registry).

    agent.py     the Agent: converge the running reloaders to the registry, adopt after a restart
    state.py     its state file, <home>/runtime/agent.json, and how it recognises its reloaders
    env.py       a tenant's environment, read before its runtime starts
    reports.py   the agent's half of local runtime reporting: tenant reports onto the bus
    __main__.py  the process `hostplane up` starts: python -m hostplane.local.agent

It launches `python -m reloader` processes (in reloader.sandbox); reloader/ itself knows
nothing of it. Kept import-free: `python -m` and the state's readers pay only for what they use.
"""
