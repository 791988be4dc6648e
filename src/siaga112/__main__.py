from siaga112.cli import main

raise SystemExit(main())
