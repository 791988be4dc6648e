"""Operators: SIP accounts live in Asterisk through PJSIP realtime, queue sessions via AMI."""
