"""Champion or challenger: two deployed models compared by what their decisions cost."""
