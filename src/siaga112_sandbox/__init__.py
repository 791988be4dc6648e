"""siaga112's development sandbox: the local Asterisk 22 (mmdebstrap root, chroot), the SIPp
driver, demo calls and the local stack. For development, tests and benches; never shipped in
the service image, and nothing in `siaga112` imports it (checked by `make lint`)."""
