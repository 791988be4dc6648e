"""The edge to Asterisk: the only package that knows AMI and FastAGI.

Raw AGI requests and AMI messages are turned here into typed, frozen values and domain events;
nothing outside this package sees a raw AMI dict or an ``agi_*`` variable.
"""
