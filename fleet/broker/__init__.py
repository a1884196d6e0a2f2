"""MQTT brokers for Fleet: Mosquitto configuration and revocation, and the embedded amqtt broker.

Both enforce the same identities and topic isolation (fleet/broker/acl.py). No Django here:
the callers pass paths, keys and callables.
"""
