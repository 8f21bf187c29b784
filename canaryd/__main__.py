from canaryd.cli import main

raise SystemExit(main())
