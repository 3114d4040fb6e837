import assert from "node:assert/strict";
import { dataForm, formValues } from "../../src/xml/data_form.ts";

Deno.test("data forms: a field's values come before its options (XEP-0004 schema)", () => {
  const form = dataForm("form", "urn:example", [
    { var: "size", type: "list-single", label: "Size", values: ["20"], options: ["10", "20"] },
  ]);
  const field = form.elements("field").find((f) => f.attrs.var === "size")!;
  assert.deepEqual(
    field.elements().map((c) => c.name),
    ["value", "option", "option"],
  );
  assert.equal(
    String(field),
    `<field var="size" type="list-single" label="Size"><value>20</value>` +
      `<option><value>10</value></option><option><value>20</value></option></field>`,
  );
  assert.deepEqual(formValues(form).get("size"), ["20"]);
});
