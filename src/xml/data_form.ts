// Data forms (XEP-0004): building a form or result, and reading a submitted one.
import { type Element, x } from "./element.ts";
import { NS } from "./ns.ts";

export interface FormField {
  var: string;
  type?: string;
  label?: string;
  values?: string[];
  options?: string[];
}

export function dataForm(
  type: "form" | "result" | "submit",
  formType: string,
  fields: FormField[],
  title?: string,
): Element {
  return x(
    "x",
    { xmlns: NS.dataForms, type },
    title !== undefined && x("title", {}, title),
    x("field", { var: "FORM_TYPE", type: "hidden" }, x("value", {}, formType)),
    ...fields.map((f) =>
      x(
        "field",
        { var: f.var, type: f.type, label: f.label },
        // XEP-0004's schema orders a field's values before its options.
        ...(f.values ?? []).map((v) => x("value", {}, v)),
        ...(f.options ?? []).map((o) => x("option", {}, x("value", {}, o))),
      )
    ),
  );
}

/** The values of a submitted form by field name (FORM_TYPE included). */
export function formValues(form: Element): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of form.elements("field")) {
    if (f.attrs.var) out.set(f.attrs.var, f.elements("value").map((v) => v.text()));
  }
  return out;
}

/** XEP-0004 §3.3 booleans: "1"/"true" and "0"/"false"; anything else is undefined. */
export function formBoolean(value: string | undefined): boolean | undefined {
  if (value === "1" || value === "true") return true;
  if (value === "0" || value === "false") return false;
  return undefined;
}
