"""The contact list both cleaning front ends (``hlrsmpp clean`` and POST /api/v1/clean) are
tested with: a CSV with other columns, duplicates after normalisation, bad and empty numbers,
and what its free cleaning must count."""

FREE_CSV = ('id;name;numbers;city\n'
            '1;Alice;+44 7911 000001;"London; UK"\n'
            '2;Bob;447911000001;Leeds\n'              # duplicate of Alice after normalisation
            '3;"Carol ""C"" Smith";0033 6 12 34 56 78;Paris\n'
            '4;Dan;12345;Nowhere\n'                   # not a possible number
            '5;Eve;;Void\n'                           # no number
            '6;Frank;+1 (202) 555-0143;Washington\n'
            '7;Gina;not a number;Rome\n'
            '8;Hugo;0033612345678;Lyon\n')            # duplicate of Carol
FREE_COUNTS = {"total": 8, "empty": 1, "invalid_syntax": 2, "duplicates": 2, "looked_up": 0,
               "no_receipt": 0, "dropped_hlr": 0, "kept": 3, "removed": 5}
