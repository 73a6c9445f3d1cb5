import RPC

/// When a medication runs out, from what was supplied and how it is taken.
///
/// days of supply = ⌊quantity supplied ÷ (units per dose × doses per day)⌋, and the next
/// refill is due that many days after the supply date. "As needed" medicines (no regular
/// doses) have no refill date.
public enum MedicationSchedule {
    public static func daysOfSupply(quantity: Double, unitsPerDose: Double, dosesPerDay: Double) -> Int? {
        let perDay = unitsPerDose * dosesPerDay
        guard quantity > 0, perDay > 0 else { return nil }
        return Int((quantity / perDay).rounded(.down))
    }

    public static func nextRefill(suppliedOn: CalendarDate, quantity: Double, unitsPerDose: Double, dosesPerDay: Double) -> CalendarDate? {
        guard let days = daysOfSupply(quantity: quantity, unitsPerDose: unitsPerDose, dosesPerDay: dosesPerDay) else { return nil }
        return suppliedOn.adding(days: days)
    }
}
